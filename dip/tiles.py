"""Restoring an image too large for one fit, in overlapping tiles.

Each tile of the observation is restored by its own fit (`dip.restore`, each tile's own network from the
same seed), and the tiles' images are blended where they overlap, each weighted by a ramp that falls to
near zero at its edges, so that no seam is left. This is an **approximation** of the whole-image prior: a
tile's network sees only its tile, so structure larger than a tile is not shared between fits, and each
tile is stopped by its own rule. Its cost in dB against a whole-image fit is not measured yet
(`scripts/tiles_check.py` compares the two on one crop).

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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dip.image_io import InputError
from dip.operators import Denoise, Inpaint, JpegArtifacts, Operator, Poisson


@dataclass
class Tile:
    """One tile: where it lies in the image (pixels: top, left, height, width) and its fit's result."""

    top: int
    left: int
    height: int
    width: int
    result: Any


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


def crop_operator(operator: Operator, top: int, left: int, height: int, width: int) -> Operator:
    """The forward operator of a window of the image, for operators that act pixel by pixel.

    :raises InputError: an operator with spatial support (blur, downsampling) or one not known to act
        pixel by pixel: it cannot be cut into tiles.
    """
    if type(operator) in (Denoise, JpegArtifacts, Operator):
        return operator
    if type(operator) is Poisson and type(operator.operator) in (Operator, Denoise):  # no blur
        return operator
    if type(operator) is Inpaint:
        return Inpaint(operator.mask[..., top : top + height, left : left + width])
    raise InputError(
        f"tiles: {type(operator).__name__} is not an operator that acts pixel by pixel (denoising, Poisson "
        f"denoising without blur, inpainting, JPEG); fit the whole image, or a smaller copy of it"
    )


def restore_tiled(
    observed: torch.Tensor,
    operator: Operator,
    *,
    tile: int = 512,
    overlap: int = 64,
    clean: torch.Tensor | None = None,
    log: Callable[[str], None] | None = None,
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
    :param log: a line per tile before its fit (default: none).
    :param restore_options: everything else `dip.restore` takes for a single fit (arch, settings, stop,
        device, ...); not `seeds` or `checkpoint`, which belong to one fit.
    :returns: a `TiledResult`: the blended image on the CPU and each tile's result.
    :raises InputError: an operator that cannot be cut into tiles, a bad overlap, or `seeds`/`checkpoint`.
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
    total = torch.zeros(observed.shape[1:], dtype=torch.float64)
    weights = torch.zeros(observed.shape[-2:], dtype=torch.float64)
    result = TiledResult(image=observed, tile=tile, overlap=overlap)
    count = len(rows) * len(columns)
    h, w = min(tile, height), min(tile, width)  # every tile's size, those at the edges too
    weight = torch.outer(_ramp(h, overlap), _ramp(w, overlap)).double()
    for top in rows:
        for left in columns:
            window = (..., slice(top, top + h), slice(left, left + w))
            if log is not None:
                log(f"tile {len(result.tiles) + 1}/{count}: rows {top}-{top + h - 1}, columns {left}-{left + w - 1}")
            fitted = restore(
                observed[window],
                crop_operator(operator, top, left, h, w),
                clean=None if clean is None else clean[window],
                **restore_options,
            )
            total[window] += fitted.image[0].detach().cpu().double() * weight
            weights[window] += weight
            result.tiles.append(Tile(top, left, h, w, fitted))
    result.image = (total / weights).float().unsqueeze(0)
    return result
