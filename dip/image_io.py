"""Reading images and masks, and writing every output atomically (temporary file + rename).

Image modes are handled on purpose: greyscale stays one channel; RGBA/LA lose their alpha with a
warning (the method restores colour, not transparency); palette images become RGB; 16-bit PNGs are
scaled by 1/65535 (not clipped); JPEGs with an EXIF orientation are turned upright first.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError


class InputError(ValueError):
    """Bad input from the user: printed as one line, naming the culprit, with no traceback."""


def read_array(path: str | Path) -> np.ndarray:
    """Image file → float32 array H×W×C in [0, 1] (C = 1 or 3)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as err:
        raise InputError(f"{path}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise InputError(f"{path}: not a readable image ({err})") from None
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        scale = 65535.0 if img.mode.startswith("I;16") or np.asarray(img).max() > 255 else 255.0
        return (np.asarray(img, dtype=np.float64) / scale).astype(np.float32)[..., None]
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        warnings.warn(f"{path}: alpha channel dropped", stacklevel=2)
    if img.mode in ("L", "LA", "1"):
        img = img.convert("L")
    else:
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def peek_size(path: str | Path) -> tuple[int, int, int]:
    """(height, width, channels) of an image file from its header, without decoding its pixels, so that
    a fit too large for the machine is refused before the image is read (EXIF rotation applied)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # a header says nothing dangerous
    try:
        with Image.open(path) as img:
            w, h = img.size
            if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # orientations that swap the sides
                w, h = h, w
            channels = 1 if img.mode in ("L", "LA", "1", "I;16", "I;16B", "I;16L", "I") else 3
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise InputError(f"{path}: not a readable image ({err})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return h, w, channels


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None].float()


def to_array(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().clamp(0, 1).cpu()[0].numpy().transpose(1, 2, 0)


def load_image(path: str | Path) -> torch.Tensor:
    """Image file → tensor (1, C, H, W) in [0, 1]."""
    return to_tensor(read_array(path))


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Mask file → (1, 1, H, W) of 0/1 (bright = known pixel); rejects a size differing from `size`."""
    arr = read_array(path).mean(axis=-1)
    if size is not None and arr.shape != tuple(size):
        raise InputError(f"{path}: mask is {arr.shape[0]}x{arr.shape[1]} but the image is {size[0]}x{size[1]}")
    return torch.from_numpy((arr > 0.5).astype(np.float32))[None, None]


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


def save_json(obj: dict, path: str | Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def save_csv(frame: pd.DataFrame, path: str | Path) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_text(text: str, path: str | Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
