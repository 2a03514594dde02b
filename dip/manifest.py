"""A dataset manifest: one row per image (id, path, role, mask, crop, resize, source, licence, dataset,
flash, reference).

`path` is a file (relative paths are taken from the manifest's folder; a path starting with
`{data_root}/` is taken from the user's data root, so that one manifest per paper dataset works with
anyone's copy of it) or `skimage:NAME` for an image that scikit-image ships, so the default dataset
needs no download. A row of role `pair` is a flash/no-flash pair for the paired tasks: `path` is the no-flash
photograph (the observation), `flash` the flash one and `reference`, if the pair is synthetic, the
no-flash photograph without its noise (the ground truth a real pair has not). `dataset` names the dataset a row belongs to (as `data/published` names it). `check` opens every image before
any job runs and reports each problem as one line naming the row and file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dip.image_io import MIN_SIZE, InputError, load_mask, read_array

COLUMNS = ("id", "path", "role", "mask", "crop", "resize", "source", "licence", "dataset", "flash", "reference")
ROLES = ("", "clean", "pair")
DATA_ROOT = "{data_root}"
DATA_ROOT_ENV = "DIP_DATA_ROOT"
SIZE_MULTIPLE = 8  # prepared images are cropped so that the paper's SR factors (2, 4, 8) divide them; another
#                    factor's observation, fit and scores centre-crop to its multiple (dip.tasks.Task.crop)


def read(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked in {Path.cwd()})"
        raise InputError(f"{path}: manifest not found{where}")
    frame = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    if frame.empty:
        raise InputError(f"{path}: manifest has no images")
    if "id" not in frame or "path" not in frame:
        header = ", ".join(map(str, frame.columns))
        hint = " (it reads as one column: is it tab-separated?)" if len(frame.columns) == 1 else ""
        raise InputError(f"{path}: a manifest's header names the columns id and path, got: {header}{hint}")
    for column in COLUMNS:
        if column not in frame:
            frame[column] = ""
    duplicated = frame["id"][frame["id"].duplicated()].unique()
    if len(duplicated):
        raise InputError(f"{path}: duplicate id {duplicated[0]!r}")
    return frame.set_index("id", drop=False)


def resolve(path: str, base: Path, data_root: str | None = None) -> str:
    """A manifest path as a file name: `skimage:` names as they are, `{data_root}/...` under the data root,
    other relative paths from the manifest's folder."""
    if path.startswith(DATA_ROOT):
        if not data_root:
            raise InputError(
                f"{path}: the manifest reads from a data root; give it with --config data_root=DIR "
                f"or the environment variable {DATA_ROOT_ENV}"
            )
        return str(Path(data_root) / path[len(DATA_ROOT) :].lstrip("/\\"))
    return path if path.startswith("skimage:") or Path(path).is_absolute() else str(base / path)


def load_source(path: str, mask: bool = False) -> np.ndarray:
    """A manifest path → float32 array H×W×C in [0, 1]; with `mask`, the known pixels (H×W×1 of 0/1) by the
    mask rule of `dip.image_io.load_mask`, whatever the file's encoding."""
    if mask and not path.startswith("skimage:"):
        return load_mask(path)[0].numpy().transpose(1, 2, 0)
    if path.startswith("skimage:"):
        from skimage import data

        name = path.split(":", 1)[1]
        loader = getattr(data, name, None)
        if loader is None:
            raise InputError(f"{path}: scikit-image has no bundled image {name!r}")
        arr = loader()
        arr = np.asarray(arr[0] if isinstance(arr, tuple) else arr)  # stereo_motorcycle: (left, right, disparity)
        arr = arr[..., None] if arr.ndim == 2 else arr[..., :3]
        return arr.astype(np.float32) / (65535.0 if arr.dtype == np.uint16 else 255.0)
    return read_array(path)


def prepare(arr: np.ndarray, crop: str = "", resize: str = "") -> np.ndarray:
    """Crop (`left,top,width,height`), resize (`N`, N×N, or `WxH`, Lanczos), then centre-crop to a multiple
    of 8. Raises ValueError for a crop or resize that does not parse, and for a crop window not inside the
    image (NumPy would silently cut it to the image)."""
    if crop:
        try:
            left, top, width, height = (int(v) for v in crop.split(","))
        except ValueError:
            raise ValueError(f"crop {crop!r}: must be left,top,width,height") from None
        h, w = arr.shape[:2]
        if min(left, top) < 0 or min(width, height) <= 0 or left + width > w or top + height > h:
            raise ValueError(f"crop {crop}: the window is not inside the {w}x{h} image")
        arr = arr[top : top + height, left : left + width]
    if resize:
        try:
            w, h = (int(v) for v in resize.lower().split("x")) if "x" in resize.lower() else (int(resize),) * 2
        except ValueError:
            raise ValueError(f"resize {resize!r}: must be N or WxH") from None
        channels = [Image.fromarray(arr[..., c]).resize((w, h), Image.LANCZOS) for c in range(arr.shape[-1])]
        arr = np.clip(np.stack([np.asarray(c) for c in channels], axis=-1), 0, 1).astype(np.float32)
    h, w = arr.shape[:2]
    hh, ww = h - h % SIZE_MULTIPLE, w - w % SIZE_MULTIPLE
    top, left = (h - hh) // 2, (w - ww) // 2
    return arr[top : top + hh, left : left + ww]


def _open(
    path: str, base: Path, data_root: str | None, where: str, crop: str, resize: str, mask: bool = False
) -> np.ndarray:
    """One file of a manifest row, prepared as the pipeline prepares it; errors name the row and file."""
    try:
        resolved = resolve(path, base, data_root)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    if path.startswith(DATA_ROOT) and not Path(resolved).is_file():
        raise InputError(f"{where}: {resolved}: file not found (looked under data_root {data_root})")
    arr = load_source(resolved, mask)
    try:
        return prepare(arr, crop, resize)
    except ValueError as err:
        raise InputError(f"{where}: {err}") from None


def check(
    frame: pd.DataFrame, base: Path, resize: str | None = None, data_root: str | None = None
) -> dict[str, tuple[int, int, int]]:
    """Open every image and mask; raise InputError on the first bad row. Returns each id's prepared
    (height, width, channels); `resize` overrides every row's resize, as the pipeline's config may."""
    sizes = {}
    if data_root and any(p.startswith(DATA_ROOT) for p in frame["path"]) and not Path(data_root).is_dir():
        raise InputError(f"data_root {data_root}: no such folder")
    for row in frame.itertuples():
        where = f"manifest row {row.id!r}"
        if row.role not in ROLES:
            raise InputError(f"{where}: role must be clean or pair, got {row.role!r}")
        if (row.role == "pair") != bool(row.flash):
            raise InputError(
                f"{where}: a pair row (role pair) needs its flash photograph in `flash`, and only a pair row has one"
            )
        if row.reference and row.role != "pair":
            raise InputError(f"{where}: `reference` is the ground truth of a pair row (role pair)")
        resize_ = str(resize) if resize else row.resize
        arr = _open(row.path, base, data_root, where, row.crop, resize_)
        h, w = arr.shape[:2]
        if arr.shape[2] not in (1, 3):
            raise InputError(
                f"{where}: {row.path} has {arr.shape[2]} channels; the benchmark's images are greyscale "
                f"or colour (restore other images with dip fit)"
            )
        if min(h, w) < MIN_SIZE:
            raise InputError(
                f"{where}: {row.path} is {h}x{w} after crop/resize, smaller than the minimum {MIN_SIZE}x{MIN_SIZE}"
            )
        for column in ("mask", "flash", "reference"):
            value = getattr(row, column)
            if not value:
                continue
            other = _open(value, base, data_root, where, row.crop, resize_, mask=column == "mask")
            # a mask is one channel whatever the image has; a pair's photographs match in channels too
            shape, expected = (other.shape[:2], (h, w)) if column == "mask" else (other.shape, arr.shape)
            if shape != expected:
                raise InputError(
                    f"{where}: {column} {value} is {'x'.join(map(str, shape))} but the image is "
                    f"{'x'.join(map(str, expected))}"
                )
        sizes[row.id] = (h, w, arr.shape[2])
    return sizes
