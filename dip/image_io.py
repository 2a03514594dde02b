"""Reading images and masks, and writing every output atomically (temporary file + rename).

Values are read into [0, 1] by one rule (docs/guide/images.md): integer samples by their
type's range (8-bit /255, 16-bit /65535, 1-bit as 0/1), floating-point samples as they are and refused
outside [0, 1] (NaN and infinities too) unless `Reading.intensity_range` says which of the file's values
are 0 and 1. Greyscale stays one channel, colour is three, an N-band TIFF is N; RGBA/LA lose their alpha
with a warning (the method restores colour, not transparency); palette and CMYK images become RGB;
orientation tags (EXIF, TIFF) are applied. A file of several pages (a z-stack, a hyperspectral cube, an
animation) is refused unless `Reading.pages_as_channels` reads its pages as channels: no page is dropped
silently. TIFF is read with tifffile, 16-bit PNG with imagecodecs (Pillow reads colour ones at 8 bits),
everything else with Pillow. A mask is bright = known (`MASK_RULE`), whatever its encoding.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from matplotlib.figure import Figure

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MASK_RULE = (
    "a mask is bright = known, dark = unknown, in any encoding: pixels above the midpoint of the file's "
    "darkest and brightest values are known; where the alpha channel varies, alpha is the mask "
    "(transparent = unknown)"
)
PAGES_HINT = "dip reads one page, or every page as a channel with --pages-as-channels"
MIN_SIZE = 16  # smallest side we accept: every network pads up to its own minimum from there


class InputError(ValueError):
    """Bad input from the user: printed as one line, naming the culprit, with no traceback."""


@dataclass(frozen=True)
class Reading:
    """How image files are read (`dip fit --intensity-range LO,HI`, `--pages-as-channels`).

    intensity_range: the file's values read as 0 and as 1 (values outside refused); None: the sample
        type's range for integers, [0, 1] for floats.
    pages_as_channels: read every page (frame) of a file as channels, page after page; otherwise a file
        of several pages is refused.
    above_one: values above the one end (1, or HI of the intensity range) are read, not refused: a Poisson
        observation (counts / peak) exceeds 1 wherever a count exceeds the peak (`--noise poisson`).
    """

    intensity_range: tuple[float, float] | None = None
    pages_as_channels: bool = False
    above_one: bool = False

    def __post_init__(self) -> None:
        if self.intensity_range is not None and not np.isfinite(self.intensity_range).all():
            raise InputError(f"--intensity-range: LO and HI must be finite numbers, got {self.intensity_range}")
        if self.intensity_range is not None and not self.intensity_range[0] < self.intensity_range[1]:
            raise InputError(f"--intensity-range: LO must be below HI, got {self.intensity_range}")


@dataclass(frozen=True)
class Source:
    """What an image file holds, from its header alone: the size and channels it is read as (alpha dropped,
    pages stacked), its stored sample type (NumPy's name: bool, uint8, uint16, float32, ...), the stored
    values read as 0 and 1, and the number of pages stacked as channels."""

    height: int
    width: int
    channels: int
    sample_type: str
    low: float
    high: float
    pages: int = 1

    @property
    def output_type(self) -> np.dtype:
        """Sample type of the full-precision output: 8- and 16-bit integers stay, unless the intensity range
        reaches past them or spans fewer than 256 stored values (counts 0..10: whole numbers would keep fewer
        levels than the 8-bit preview); the rest is float32."""
        dtype = np.dtype({"bool": "uint8", "uint8": "uint8", "uint16": "uint16"}.get(self.sample_type, "float32"))
        narrow = self.high - self.low < 255 and (self.low, self.high) != _type_range(self.sample_type)
        if dtype.kind == "u" and (narrow or not 0 <= self.low < self.high <= np.iinfo(dtype).max):
            return np.dtype("float32")
        return dtype

    @property
    def output_suffix(self) -> str | None:
        """Suffix of the full-precision output beside the 8-bit preview `NAME.png`: `-16bit.png` for 16-bit
        grey or colour, `.tif` for float (and other integer types), 8-bit samples read with an intensity
        range, pages or other channel counts; None where the preview keeps everything (8-bit grey/RGB)."""
        plain = self.channels in (1, 3) and self.pages == 1
        if plain and self.sample_type in ("bool", "uint8") and (self.low, self.high) == _type_range(self.sample_type):
            return None
        return "-16bit.png" if plain and self.output_type == np.uint16 else ".tif"

    def record(self) -> dict:
        """For summary.json: how the input was read and its full-precision output's suffix."""
        return {
            "sample_type": self.sample_type,
            "intensity_range": [self.low, self.high],
            "channels": self.channels,
            "pages": self.pages,
            "full_precision_output": self.output_suffix,
        }


@dataclass
class _Raw:
    """A file's samples as stored, shape (pages, H, W, samples) after orientation; `samples` is None when
    only the header was read. `alpha`: the last sample is alpha; `invert`: 0 is white (TIFF MinIsWhite)."""

    shape: tuple[int, int, int, int]
    sample_type: str
    alpha: bool = False
    invert: bool = False
    samples: np.ndarray | None = None


def _type_range(sample_type: str) -> tuple[float, float]:
    dtype = np.dtype(sample_type)
    if dtype.kind in ("b", "f"):
        return 0.0, 1.0
    return 0.0, float(np.iinfo(dtype).max)


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """An EXIF/TIFF orientation applied to samples (pages, H, W, S) as Pillow's exif_transpose does."""
    turn = {
        2: lambda: a[:, :, ::-1],
        3: lambda: a[:, ::-1, ::-1],
        4: lambda: a[:, ::-1],
        5: lambda: a.transpose(0, 2, 1, 3),
        6: lambda: np.rot90(a, -1, axes=(1, 2)),
        7: lambda: a[:, ::-1, ::-1].transpose(0, 2, 1, 3),
        8: lambda: np.rot90(a, 1, axes=(1, 2)),
    }
    return np.ascontiguousarray(turn[orientation]()) if orientation in turn else a


def _oriented_shape(shape: tuple[int, int, int, int], orientation: int) -> tuple[int, int, int, int]:
    p, h, w, s = shape
    return (p, w, h, s) if orientation in (5, 6, 7, 8) else shape


def _too_large(path: Path, pixels: int) -> None:
    """Pillow's decompression-bomb limit, for the readers that lack it."""
    if Image.MAX_IMAGE_PIXELS and pixels > 2 * Image.MAX_IMAGE_PIXELS:
        raise InputError(
            f"{path}: {pixels} pixels exceed the limit of {2 * Image.MAX_IMAGE_PIXELS} (a decompression bomb?)"
        )


def _tiff(path: Path, decode: bool) -> _Raw | None:
    """A TIFF through tifffile; None for photometric kinds that Pillow converts better (palette, CMYK, YCbCr,
    CIELab) when the file is one page of at most 8 bits."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series
        if not series:
            raise InputError(f"{path}: not a readable TIFF (no image in it: truncated or damaged?)")
        kinds = {(s.shape, s.axes, str(s.dtype)) for s in series}
        if len(kinds) > 1:
            shapes = ", ".join(sorted({"x".join(map(str, s.shape)) + f" {s.dtype}" for s in series}))
            raise InputError(
                f"{path}: {len(tif.pages)} pages of different sizes or sample types ({shapes}); "
                f"{PAGES_HINT} when they share a size"
            )
        shape, axes, dtype = series[0].shape, series[0].axes, series[0].dtype
        page = series[0].keyframe
        photometric = tifffile.PHOTOMETRIC
        if page.photometric not in (photometric.MINISBLACK, photometric.MINISWHITE, photometric.RGB):
            if len(tif.pages) == 1 and page.bitspersample <= 8:
                return None
            raise InputError(
                f"{path}: TIFF of photometric {page.photometric.name} with {len(tif.pages)} pages of "
                f"{page.bitspersample} bits is not supported; save it as greyscale or RGB"
            )
        tag = page.tags.get(274)
        orientation = int(tag.value) if tag is not None else 1
        alpha = any(e in (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA) for e in page.extrasamples)
        if "Y" not in axes or "X" not in axes:
            raise InputError(f"{path}: TIFF axes {axes!r} hold no image plane")
        order = [i for i, a in enumerate(axes) if a not in "YXS"] + [axes.index("Y"), axes.index("X")]
        order += [axes.index("S")] if "S" in axes else []
        h, w = shape[axes.index("Y")], shape[axes.index("X")]
        s = shape[axes.index("S")] if "S" in axes else 1
        pages = int(np.prod([shape[i] for i in order[: -3 if "S" in axes else -2]], dtype=np.int64)) * len(series)
        raw = _Raw(
            _oriented_shape((pages, h, w, s), orientation),
            str(dtype),
            alpha,
            page.photometric == photometric.MINISWHITE,
        )
        if decode:
            _too_large(path, pages * h * w)
            stored = np.stack([x.asarray().transpose(order) for x in series]).reshape(pages, h, w, s)
            raw.samples = _orient(stored, orientation)
        return raw


def _png16(path: Path, decode: bool, orientation: int) -> _Raw | None:
    """A 16-bit PNG through imagecodecs (Pillow reads a colour one at 8 bits); None for other PNGs."""
    with open(path, "rb") as f:
        header = f.read(33)
    if header[12:16] != b"IHDR" or header[24] != 16:
        return None
    h, w = int.from_bytes(header[20:24], "big"), int.from_bytes(header[16:20], "big")
    s = {0: 1, 4: 2, 2: 3, 6: 4}[header[25]]
    raw = _Raw(_oriented_shape((1, h, w, s), orientation), "uint16", alpha=s in (2, 4))
    if decode:
        import imagecodecs

        _too_large(path, h * w)
        try:
            stored = imagecodecs.png_decode(path.read_bytes())
        except Exception as err:  # imagecodecs raises its own error types
            raise InputError(f"{path}: not a readable image ({err})") from None
        raw.samples = _orient(stored.reshape(1, h, w, s), orientation)
    return raw


# Pillow mode -> (samples, alpha, stored type, mode converted to before reading).
_PILLOW_MODES = {
    "1": (1, False, "bool", None),
    "L": (1, False, "uint8", None),
    "LA": (2, True, "uint8", None),
    "La": (2, True, "uint8", "LA"),
    "RGB": (3, False, "uint8", None),
    "RGBA": (4, True, "uint8", None),
    "RGBa": (4, True, "uint8", "RGBA"),
    "RGBX": (3, False, "uint8", "RGB"),
    "CMYK": (3, False, "uint8", "RGB"),
    "YCbCr": (3, False, "uint8", "RGB"),
    "LAB": (3, False, "uint8", "RGB"),
    "HSV": (3, False, "uint8", "RGB"),
    "I;16": (1, False, "uint16", None),
    "I;16L": (1, False, "uint16", None),
    "I;16B": (1, False, "uint16", None),
    "I;16N": (1, False, "uint16", None),
    "F": (1, False, "float32", None),
}


def _pillow_mode(img: Image.Image, path: Path, frames: int) -> tuple[int, bool, str, str | None]:
    if frames > 1:  # later frames of an animation may change mode (Pillow loads them as RGB/RGBA)
        return 3, False, "uint8", "RGB"
    if img.mode in ("P", "PA"):
        alpha = img.mode == "PA" or "transparency" in img.info
        return (4, True, "uint8", "RGBA") if alpha else (3, False, "uint8", "RGB")
    if img.format == "PPM" and (maxval := _netpbm_maxval(path)) > 255:
        raise InputError(f"{path}: a 16-bit PGM/PPM (maxval {maxval}), which Pillow misreads; save it as PNG or TIFF")
    if img.mode not in _PILLOW_MODES:  # e.g. "I": 32-bit integers whose bit depth Pillow does not keep
        raise InputError(f"{path}: image mode {img.mode} is not supported; save it as an 8- or 16-bit PNG or a TIFF")
    return _PILLOW_MODES[img.mode]


def _netpbm_maxval(path: Path) -> int:
    """The maximum value a PGM/PPM header declares (255 for a PBM, which has none)."""
    tokens = []
    with open(path, "rb") as f:
        for line in f:
            tokens += line.split(b"#")[0].split()
            if tokens[:1] in ([b"P1"], [b"P4"]):
                return 255
            if len(tokens) >= 4:
                return int(tokens[3])
    return 255


def _pillow(path: Path, decode: bool) -> _Raw:
    """Any other format through Pillow."""
    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(0x0112, 1)
            if img.format == "PNG" and (raw := _png16(path, decode, orientation)) is not None:
                return raw
            frames = getattr(img, "n_frames", 1)
            if img.format == "MPO" and frames > 1:
                if decode:  # once, when the pixels are read
                    warnings.warn(
                        f"{path}: the first of the {frames} images of this MPO file is read (the others "
                        f"are a camera's previews, depth maps or stereo views)",
                        stacklevel=4,
                    )
                frames = 1
            samples, alpha, sample_type, convert = _pillow_mode(img, path, frames)
            w, h = img.size
            raw = _Raw(_oriented_shape((frames, h, w, samples), orientation), sample_type, alpha)
            if decode:
                stored = []
                for index in range(frames):
                    img.seek(index)
                    frame = img.convert(convert) if convert else img
                    frame.load()
                    stored.append(np.asarray(frame).reshape(h, w, samples))
                raw.samples = _orient(np.stack(stored), orientation)
            return raw
    except InputError:
        raise
    except Image.DecompressionBombError as err:
        raise InputError(f"{path}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: not a readable image ({err})") from None


def _open(path: str | Path, decode: bool) -> tuple[Path, _Raw]:
    """A file's samples as stored (or only their shape): TIFF through tifffile, the rest through Pillow."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder, where one image file is expected")
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic in TIFF_MAGIC:
        log = logging.getLogger("tifffile")
        log.disabled = True  # its log lines about a damaged file would break the one-line error
        try:
            raw = _tiff(path, decode)
        except InputError:
            raise
        except Exception as err:  # tifffile and its codecs raise many types for a damaged file
            raise InputError(f"{path}: not a readable TIFF ({err})") from None
        finally:
            log.disabled = False
        if raw is not None:
            return path, raw
    if decode:
        return path, _pillow(path, decode)
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # a header says nothing dangerous
    try:
        return path, _pillow(path, decode)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _source(path: Path, raw: _Raw, reading: Reading) -> Source:
    """How the file is read, refusing what cannot be read on purpose."""
    pages, h, w, samples = raw.shape
    if pages > 1 and not reading.pages_as_channels:
        raise InputError(f"{path}: {pages} pages (a stack, a multi-band image or an animation); {PAGES_HINT}")
    dtype = np.dtype(raw.sample_type)
    if reading.intensity_range is None and dtype.kind in "iu" and dtype.itemsize > 2:
        # A 32- or 64-bit integer type's range says nothing about the data (a 12-bit image stored in int32 would
        # read as black): its units must be given.
        raise InputError(
            f"{path}: {dtype.itemsize * 8}-bit integer samples; give the values that are 0 and 1 "
            f"with --intensity-range=LO,HI"
        )
    low, high = reading.intensity_range or _type_range(raw.sample_type)
    return Source(h, w, (samples - raw.alpha) * pages, raw.sample_type, float(low), float(high), pages)


def describe(path: str | Path, reading: Reading = Reading()) -> Source:
    """How an image file will be read (size, channels, stored type and range), from its header only, so that
    a fit too large for the machine is refused before the image is decoded. Raises InputError for files
    `read_array` refuses for their kind (pages without `pages_as_channels`, unsupported modes)."""
    return _source(*_open(path, decode=False), reading)


def peek_size(path: str | Path, reading: Reading = Reading()) -> tuple[int, int, int]:
    """(height, width, channels) of an image file as `read_array` reads it, from its header alone."""
    source = describe(path, reading)
    return source.height, source.width, source.channels


def read_array(path: str | Path, reading: Reading = Reading()) -> np.ndarray:
    """Image file → float32 array H×W×C in [0, 1] by the module's rule (C: 1 grey, 3 colour, N bands, or
    pages × channels with `reading.pages_as_channels`). Raises InputError, naming the file, for what cannot
    be read on purpose: values outside [0, 1] or the intensity range, NaN, pages, unsupported modes."""
    path, raw = _open(path, decode=True)
    source = _source(path, raw, reading)
    stored = raw.samples
    if raw.alpha:
        warnings.warn(f"{path}: alpha channel dropped", stacklevel=2)
        stored = stored[..., :-1]
    # float32 holds every 8- and 16-bit integer and every float32 exactly; wider types are scaled in float64
    wide = np.dtype(raw.sample_type).itemsize > 2 and raw.sample_type != "float32"
    x = stored.transpose(1, 2, 0, 3).reshape(source.height, source.width, source.channels)
    x = x.astype(np.float64 if wide else np.float32)
    if not np.isfinite(x).all():
        raise InputError(f"{path}: {np.count_nonzero(~np.isfinite(x))} NaN or infinite values; dip needs finite ones")
    lowest, highest = float(x.min()), float(x.max())
    if reading.above_one:
        highest = min(highest, source.high)
    if reading.intensity_range is not None:
        if lowest < source.low or highest > source.high:
            raise InputError(
                f"{path}: values {lowest:g}..{highest:g} outside --intensity-range {source.low:g},{source.high:g}"
            )
    elif np.dtype(raw.sample_type).kind == "f" and (lowest < 0 or highest > 1):
        raise InputError(
            f"{path}: float values {lowest:g}..{highest:g} outside [0, 1]; give the values that "
            f"are 0 and 1 with --intensity-range=LO,HI (e.g. --intensity-range={lowest!r},{highest!r})"
        )
    elif lowest < 0:
        raise InputError(
            f"{path}: negative values ({lowest:g}) in a signed integer image; give the values that "
            f"are 0 and 1 with --intensity-range=LO,HI"
        )
    x = (x - source.low) / (source.high - source.low)
    return (1 - x if raw.invert else x).astype(np.float32, copy=False)


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    import torch  # imported where used: the pipeline's scoring, tables and figures run without torch

    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None].float()


def to_array(x: torch.Tensor, clip: bool = True) -> np.ndarray:
    """(1, C, H, W) → H×W×C float32, clipped to [0, 1] unless `clip` is False; `to_tensor` is the inverse.

    >>> x = to_tensor(np.full((4, 5, 3), 0.25, dtype=np.float32))
    >>> x.shape
    torch.Size([1, 3, 4, 5])
    >>> a = to_array(x * 8)  # 2.0 is clipped to 1
    >>> a.shape, float(a.max()), float(to_array(x * 8, clip=False).max())
    ((4, 5, 3), 1.0, 2.0)
    """
    x = x.detach().float()
    return (x.clamp(0, 1) if clip else x).cpu()[0].numpy().transpose(1, 2, 0)


def load_image(path: str | Path, reading: Reading = Reading()) -> torch.Tensor:
    """Image file → tensor (1, C, H, W) in [0, 1] (read_array's rule)."""
    return to_tensor(read_array(path, reading))


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Mask file → (1, 1, H, W) of 0/1 (1 = known pixel) by MASK_RULE, whatever the encoding (0/1 or 0/255,
    1-bit, boolean, RGB, 16-bit, float, JPEG noise, alpha). Raises InputError for a size differing from
    `size`, several pages, or a mask without known or without unknown pixels."""
    path, raw = _open(path, decode=False)
    pages, h, w, samples = raw.shape
    if pages > 1:
        raise InputError(f"{path}: {pages} pages; a mask is one page ({MASK_RULE})")
    if size is not None and (h, w) != tuple(size):
        raise InputError(f"{path}: mask is {h}x{w} but the image is {size[0]}x{size[1]}")
    _, raw = _open(path, decode=True)
    values = raw.samples[0].astype(np.float64)
    if not np.isfinite(values).all():
        raise InputError(f"{path}: NaN or infinite values in a mask ({MASK_RULE})")
    values = -values if raw.invert else values  # the midpoint rule needs no scale, only the direction
    if raw.alpha and np.ptp(values[..., -1]) > 0:
        values = values[..., -1]
    else:
        values = values[..., : samples - raw.alpha].mean(axis=-1)
    lowest, highest = values.min(), values.max()
    if lowest == highest:
        raise InputError(
            f"{path}: every pixel has the same value, so the mask has no unknown pixel or no known one; {MASK_RULE}"
        )
    import torch

    return torch.from_numpy(values > (lowest + highest) / 2).float()[None, None]


def to_pil(x: torch.Tensor) -> Image.Image:
    arr = np.round(to_array(x) * 255).astype(np.uint8)
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def from_pil(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return to_tensor(arr[..., None] if arr.ndim == 2 else arr)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file in the same folder, then rename it onto `path`,
    so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp creates 0600 files; give outputs the permissions an ordinary write would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_png(x: torch.Tensor, path: str | Path) -> None:
    atomic_write(path, lambda tmp: to_pil(x).save(tmp, format="PNG"))


def _stored(x: torch.Tensor, source: Source, exact: bool = False) -> np.ndarray:
    """Image (1, C, H, W) in [0, 1] → H×W×C in the source's own units and output sample type (float32, not
    clipped, with `exact`)."""
    values = to_array(x, clip=not exact).astype(np.float64) * (source.high - source.low) + source.low
    dtype = np.dtype("float32") if exact else source.output_type
    if dtype.kind == "u":
        return np.clip(np.round(values), 0, np.iinfo(dtype).max).astype(dtype)
    return values.astype(dtype)


def _write_tiff(values: np.ndarray, source: Source, path: Path) -> None:
    """Pages stacked as channels go back to pages; otherwise one page of C samples."""
    import tifffile

    h, w, c = values.shape
    per_page = c // source.pages
    if source.pages > 1:
        values = values.reshape(h, w, source.pages, per_page).transpose(2, 0, 1, 3)
    if per_page == 1:
        values = values[..., 0]
    photometric = "rgb" if per_page == 3 else "minisblack"
    tifffile.imwrite(path, values, photometric=photometric, planarconfig="contig" if per_page > 1 else None)


def save_image(x: torch.Tensor, stem: str | Path, source: Source | None = None, exact: bool = False) -> list[str]:
    """Write an image (1, C, H, W) in [0, 1] as `STEM.png`, the 8-bit preview the pipeline and figures read
    (the mean of the channels when C is neither 1 nor 3), and, when `source` (how the input was read) holds
    more than that, beside it the full-precision file in the input's own units and sample type:
    `STEM-16bit.png` or `STEM.tif` (`Source.output_suffix`). `exact`: the full-precision file is always
    written, as a float32 `STEM.tif` holding x unclipped (a Poisson observation reaches above 1) on the
    [0, 1] scale, or in the source's units where those were declared (a float source, or an integer one read
    with an intensity range), read back exactly with `Reading(above_one=True)` and the same intensity range.
    Returns the file names written."""
    stem = Path(stem)
    preview = x if x.shape[1] in (1, 3) else x.mean(dim=1, keepdim=True)
    save_png(preview, stem.with_name(stem.name + ".png"))
    if exact and (source is None or np.dtype(source.sample_type).kind != "f"):
        # A float file is read as it is (or in its intensity range): integer units would not read back. Integers
        # read in units of the user's (--intensity-range) are written in those units, so that the same option
        # reads the file back; integers read by their type's range go on the [0, 1] scale.
        declared = source is not None and (source.low, source.high) != _type_range(source.sample_type)
        low, high = (source.low, source.high) if declared else (0.0, 1.0)
        source = Source(*x.shape[-2:], x.shape[1], "float32", low, high, 1 if source is None else source.pages)
    suffix = ".tif" if exact else source.output_suffix if source is not None else None
    if suffix is None:
        return [stem.name + ".png"]
    values = _stored(x, source, exact)
    if suffix == ".tif":
        write = lambda tmp: _write_tiff(values, source, tmp)  # noqa: E731
    else:
        import imagecodecs

        write = lambda tmp: tmp.write_bytes(imagecodecs.png_encode(values.copy()))  # noqa: E731
    atomic_write(stem.with_name(stem.name + suffix), write)
    return [stem.name + ".png", stem.name + suffix]


def load_psf(path: str | Path) -> np.ndarray:
    """A point-spread function file → 2-D float64 array as stored (any scale: dip.operators.normalise_psf
    scales it to sum 1). NPY through NumPy (a 2-D array, or H×W×1); PNG, TIFF and the other image formats
    through this module's readers, one page of one channel (or equal colour channels). Raises InputError,
    naming the file, for anything else."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        try:
            kernel = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise InputError(f"{path}: not a readable NPY file ({err})") from None
        if kernel.ndim == 3 and kernel.shape[-1] == 1:
            kernel = kernel[..., 0]
    else:
        _, raw = _open(path, decode=True)
        samples = raw.samples[..., : raw.shape[-1] - raw.alpha]
        if samples.shape[0] > 1:
            raise InputError(f"{path}: {samples.shape[0]} pages; a PSF is one 2-D kernel")
        if samples.shape[-1] > 1 and np.ptp(samples, axis=-1).any():
            raise InputError(f"{path}: {samples.shape[-1]} differing channels; a PSF is one 2-D kernel (greyscale)")
        kernel = samples[0, ..., 0]
        kernel = kernel.max() - kernel if raw.invert else kernel
    if kernel.dtype.kind not in "biuf":
        raise InputError(f"{path}: a PSF holds numbers, this array holds {kernel.dtype}")
    return np.asarray(kernel, dtype=np.float64)


def save_json(obj: dict, path: str | Path) -> None:
    """`obj` as strict JSON (dip.strict_json: no NaN or Infinity), atomically."""
    from dip.strict_json import dumps

    atomic_write(path, lambda tmp: tmp.write_text(dumps(obj, indent=2, default=str) + "\n"))


def save_csv(frame: pd.DataFrame, path: str | Path) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_text(text: str, path: str | Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> None:
    """A matplotlib Figure as PNG (`dpi` dots per inch) or PDF, by the path's suffix, cropped to what is
    drawn (bbox_inches="tight"), atomically."""
    fmt = Path(path).suffix.lstrip(".").lower()
    resolution = dpi if fmt == "png" else "figure"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=resolution, bbox_inches="tight"))
