"""Restoring an image too large for one fit, in overlapping tiles.

Each tile of the observation is restored by its own fit (`dip.restore`, each tile's own network from the
same seed), and the tiles' images are blended where they overlap, each weighted by a ramp that falls to
near zero at its edges, so that no seam is left. This is an **approximation** of the whole-image prior: a
tile's network sees only its tile, so structure larger than a tile is not shared between fits, and each
tile is stopped by its own rule. Against a whole-image fit it cost 0.1-0.3 dB on two 128×128 crops in
tiles of 80 (docs/scale.md, "Tiles"; `scripts/tiles_check.py`).

Only forward operators that act pixel by pixel can be cut into tiles this way (an observed pixel depends
on the same pixel of the image only): denoising (`dip.operators.Denoise`, and `dip.operators.Poisson`
without a blur), inpainting (`dip.operators.Inpaint`, its mask cut with the image) and the identity
operator of JPEG artefact removal. An operator with spatial support (blur, downsampling) would need each
tile's margin of its support, and is refused.

Example::

    >>> import torch
    >>> from dip.operators import Denoise
    >>> from dip.tiles import tile_starts, restore_tiled
    >>> tile_starts(100, tile=64, overlap=16)
    [0, 36]
    >>> noisy = torch.rand(1, 3, 40, 72, generator=torch.Generator().manual_seed(0))
    >>> result = restore_tiled(noisy, Denoise(25), tile=40, overlap=8, settings={"iterations": 2}, device="cpu")
    >>> result.image.shape, len(result.tiles)
    (torch.Size([1, 3, 40, 72]), 2)
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dip.image_io import InputError, atomic_write, save_json
from dip.operators import Denoise, Inpaint, JpegArtifacts, Operator, Poisson
from dip.strict_json import decode, dumps


@dataclass
class Tile:
    """One tile: where it lies in the image (pixels: top, left, height, width), how its fit ended (the
    iteration of its returned image and the rule that returned it, "fixed" where none did; the iterations
    run; the seconds of its fit) and its history. `result` is its fit's `dip.fit.FitResult`, None for a tile
    loaded from `restore_tiled`'s `folder`, fitted by an earlier call."""

    top: int
    left: int
    height: int
    width: int
    result: Any = None
    returned_iteration: int = 0
    returned_by: str = "fixed"
    iterations: int = 0
    seconds: float = 0.0
    history: Any = None  # pandas DataFrame, as FitResult.history

    @property
    def name(self) -> str:
        """The tile's file name in a folder, without suffix: ``r{top}-c{left}``."""
        return f"r{self.top}-c{self.left}"

    def summary(self) -> dict:
        """Where the tile lies and how its fit ended, as `dip fit`'s summary.json lists it."""
        keys = ("top", "left", "height", "width", "returned_iteration", "returned_by", "iterations", "seconds")
        return {key: getattr(self, key) for key in keys}


@dataclass
class TiledResult:
    """The blended image (1, C, H, W) in [0, 1], and every tile with its fit's `dip.fit.FitResult`."""

    image: torch.Tensor
    tile: int
    overlap: int
    tiles: list[Tile] = field(default_factory=list)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side of `size` pixels start: steps of `tile - overlap`, the last tile
    flush with the far edge (so it may overlap its neighbour by more), one tile if `size <= tile`.

    :raises InputError: `overlap` not in [0, tile / 2].
    """
    if not 0 <= overlap <= tile // 2:
        raise InputError(f"tile overlap: must be between 0 and half the tile ({tile // 2}), got {overlap}")
    if size <= tile:
        return [0]
    steps = math.ceil((size - tile) / (tile - overlap))
    return [min(i * (tile - overlap), size - tile) for i in range(steps + 1)]


def _ramp(length: int, overlap: int) -> torch.Tensor:
    """A tile's weight along one side: rising linearly over `overlap` pixels from each edge, 1 inside;
    never 0, so that an image edge covered by one tile only keeps its pixels."""
    position = torch.arange(length, dtype=torch.float32)
    from_edge = torch.minimum(position + 0.5, length - position - 0.5)
    return (from_edge / max(overlap, 1)).clamp(max=1.0)


def can_tile(operator: Operator) -> bool:
    """Whether `crop_operator` can cut `operator` into tiles: it acts pixel by pixel (denoising, Poisson
    denoising without blur, inpainting, JPEG)."""
    if type(operator) is Poisson:
        return type(operator.operator) in (Operator, Denoise)  # no blur
    return type(operator) in (Denoise, JpegArtifacts, Operator, Inpaint)


def crop_operator(operator: Operator, top: int, left: int, height: int, width: int) -> Operator:
    """The forward operator of a window of the image, for operators that act pixel by pixel.

    :raises InputError: an operator with spatial support (blur, downsampling) or one not known to act
        pixel by pixel: it cannot be cut into tiles.
    """
    if not can_tile(operator):
        raise InputError(
            f"tiles: {type(operator).__name__} is not an operator that acts pixel by pixel (denoising, Poisson "
            f"denoising without blur, inpainting, JPEG); fit the whole image, or a smaller copy of it"
        )
    if type(operator) is Inpaint:
        return Inpaint(operator.mask[..., top : top + height, left : left + width])
    return operator


def restore_tiled(
    observed: torch.Tensor,
    operator: Operator,
    *,
    tile: int = 512,
    overlap: int = 64,
    clean: torch.Tensor | None = None,
    log: Callable[[str], None] | None = None,
    folder: str | Path | None = None,
    identity: dict | None = None,
    **restore_options: Any,
) -> TiledResult:
    """Restore `observed` tile by tile with `dip.restore` and blend the tiles' images.

    :param observed: the observation (1, C, H, W) of a pixel-by-pixel operator (`crop_operator`).
    :param operator: its forward operator; an `Inpaint` mask is cut with each tile.
    :param tile: the side of a tile in pixels (tiles at the image's edges are as large; an image no larger
        than `tile` is one tile, one ordinary fit).
    :param overlap: pixels shared by neighbouring tiles, over which their images are blended (at most half
        a tile). Default 64.
    :param clean: the ground truth (1, C, H, W), cut with each tile for its fit's history only.
    :param log: a line per tile before its fit, and where each fit's own messages go (default: no lines,
        each fit's messages on stderr).
    :param folder: where to keep each finished tile (``r{top}-c{left}.npz``: its image, its history and how
        its fit ended, written atomically) and the fit of the tile in progress (``checkpoint.pt``, deleted
        when that fit ends). A tile found there is loaded instead of fitted and an interrupted tile's fit
        resumes from its checkpoint, so the same call after an interruption loses nothing finished. The
        folder's ``tiles.json`` records whose tiles they are (`identity`): a folder holding another
        restoration's tiles is refused before any tile is fitted. Default: none, nothing kept.
    :param identity: with `folder`, what determines the restoration (a dict that JSON can hold, values it
        cannot are kept as their text); default: the content hashes of the observation and the ground
        truth, the operator's state (`dip.api.describe_operator`) and `restore_options` but the device, log
        and progress. The tile and overlap are added to it.
    :param restore_options: everything else `dip.restore` takes for a single fit (arch, settings, stop,
        device, memory_saving, ...); not `seeds`, `checkpoint`, `save_network` or `init_from`, which belong
        to one fit.
    :returns: a `TiledResult`: the blended image on the CPU and each tile.
    :raises InputError: an operator that cannot be cut into tiles, a bad overlap, `seeds`/`checkpoint`, or
        a folder holding another restoration's tiles (one line, before any tile is fitted).
    """
    from dip.api import restore

    for name in ("seeds", "checkpoint", "save_network", "init_from"):
        if restore_options.get(name) is not None:
            raise InputError(f"tiles: {name} belongs to one fit and is not taken by a tiled restoration")
    if observed.dim() != 4 or observed.shape[0] != 1:
        raise InputError(f"tiles: the observation must be one image (1, C, H, W), got {tuple(observed.shape)}")
    height, width = observed.shape[-2:]
    rows, columns = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    crop_operator(operator, 0, 0, height, width)  # refused before any tile is fitted
    if log is not None:
        restore_options["log"] = log
    if folder is not None:
        folder = Path(folder)
        identity = _identity(observed, operator, clean, tile, overlap, identity, restore_options)
        check_folder(folder, identity)
        if not (folder / MANIFEST).exists():
            save_json(identity, folder / MANIFEST)
        restore_options["checkpoint"] = folder / "checkpoint.pt"
    total = torch.zeros(observed.shape[1:], dtype=torch.float64)
    weights = torch.zeros(observed.shape[-2:], dtype=torch.float64)
    result = TiledResult(image=observed, tile=tile, overlap=overlap)
    count = len(rows) * len(columns)
    h, w = min(tile, height), min(tile, width)  # every tile's size, those at the edges too
    weight = torch.outer(_ramp(h, overlap), _ramp(w, overlap)).double()
    for top in rows:
        for left in columns:
            window = (..., slice(top, top + h), slice(left, left + w))
            place = Tile(top, left, h, w)
            path = None if folder is None else folder / f"{place.name}.npz"
            kept = path is not None and path.exists()
            if log is not None:
                where = f"rows {top}-{top + h - 1}, columns {left}-{left + w - 1}"
                log(f"tile {len(result.tiles) + 1}/{count}: {where}" + (f" (finished before: {path})" if kept else ""))
            if kept:
                done, image = _load(path, place)
            else:
                fitted = restore(
                    observed[window],
                    crop_operator(operator, top, left, h, w),
                    clean=None if clean is None else clean[window],
                    **restore_options,
                )
                done, image = _finished(place, fitted), fitted.image[0].detach().cpu().float()
                if path is not None:
                    _save(path, done, image)
            total[window] += image.double() * weight
            weights[window] += weight
            result.tiles.append(done)
    result.image = (total / weights).float().unsqueeze(0)
    return result


MANIFEST = "tiles.json"
"""The file of a `restore_tiled` folder that records whose tiles the folder holds."""


def check_folder(folder: str | Path, identity: dict) -> int:
    """How many finished tiles `folder` (of `restore_tiled`) holds of the restoration `identity` (as its
    tiles.json records it); 0 where the folder does not exist. Reads only.

    :raises InputError: one line: the folder holds another restoration's tiles (naming what differs), or
        tiles without a tiles.json saying whose.
    """
    from dip.checkpoint import differences, what_differs

    folder = Path(folder)
    finished = len(list(folder.glob("r*-c*.npz"))) if folder.is_dir() else 0
    manifest = folder / MANIFEST
    if not manifest.exists():
        if finished:
            raise InputError(
                f"{folder}: holds tiles but no {MANIFEST} saying whose; delete them or choose another folder"
            )
        return 0
    try:
        recorded = decode(json.loads(manifest.read_text()))
    except (OSError, ValueError) as err:
        raise InputError(f"{manifest}: cannot be read ({err}); delete the folder to fit its tiles again") from None
    differs = differences(decode(json.loads(dumps(identity, default=str))), recorded)
    if differs:
        raise InputError(
            f"{folder}: holds the tiles of another restoration ({what_differs(differs)}); delete them or choose "
            f"another folder"
        )
    return finished


def recorded_tile(folder: str | Path) -> tuple[int, int] | None:
    """The (tile, overlap) the tiles in `folder` were cut with, as its tiles.json records them; None without
    one (or one that cannot be read: `check_folder` says why)."""
    try:
        recorded = json.loads((Path(folder) / MANIFEST).read_text())
        return int(recorded["tile"]), int(recorded["tile overlap"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _identity(observed, operator, clean, tile: int, overlap: int, identity: dict | None, options: dict) -> dict:
    """What a folder's tiles belong to (see `restore_tiled`), as tiles.json holds it (strict JSON, read back)."""
    from dip.api import describe_operator
    from dip.provenance import content_hash

    if identity is None:
        identity = {
            "observation": content_hash(observed),
            "clean image": None if clean is None else content_hash(clean),
            "operator": describe_operator(operator),
            **{k: v for k, v in sorted(options.items()) if k not in ("device", "log", "progress")},
        }
    return decode(json.loads(dumps({**identity, "tile": tile, "tile overlap": overlap}, default=str)))


def _finished(place: Tile, fitted) -> Tile:
    """`place` with how its fit `fitted` (a `dip.fit.FitResult`) ended."""
    history = fitted.history
    return replace(
        place,
        result=fitted,
        returned_iteration=fitted.returned_iteration,
        returned_by=fitted.returned_by or "fixed",
        iterations=fitted.iterations,
        seconds=float(history["seconds"].max()) if len(history) else 0.0,
        history=history,
    )


def _save(path: Path, tile: Tile, image: torch.Tensor) -> None:
    """A finished tile's file: its image (C, h, w) float32, its history as CSV text, how its fit ended."""
    history = "" if tile.history is None else tile.history.to_csv(index=False)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, image=image.numpy(), history=np.array(history), tile=np.array(dumps(tile.summary())))

    atomic_write(path, write)


def _load(path: Path, place: Tile) -> tuple[Tile, torch.Tensor]:
    """A finished tile from its file (`_save`), checked against where it should lie."""
    import pandas as pd

    try:
        with np.load(path, allow_pickle=False) as data:
            image = torch.from_numpy(data["image"].astype(np.float32))
            ended = decode(json.loads(str(data["tile"])))
            history = str(data["history"])
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{path}: not a readable tile ({err}); delete it to fit the tile again") from None
    where = [ended.get(key) for key in ("top", "left", "height", "width")]
    if where != [place.top, place.left, place.height, place.width] or list(image.shape[-2:]) != where[2:]:
        raise InputError(f"{path}: holds another tile (top, left, height, width: {where}); delete it to fit it again")
    keys = ("returned_iteration", "returned_by", "iterations", "seconds")
    tile = replace(place, **{key: ended[key] for key in keys})
    tile.history = pd.read_csv(io.StringIO(history)) if history else None
    return tile, image
