"""The fixed network input z, and its per-iteration perturbation."""

from __future__ import annotations

import torch


def noise_input(channels: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """z ~ U(0, 0.1), shape (1, channels, h, w): the paper's `noise` input (not centred)."""
    return torch.rand(1, channels, h, w, generator=generator) * 0.1


def meshgrid_input(h: int, w: int) -> torch.Tensor:
    """Two channels holding the x and y coordinates in [0, 1]: the paper's `meshgrid` input."""
    ys = torch.linspace(0, 1, h).view(h, 1).expand(h, w)
    xs = torch.linspace(0, 1, w).view(1, w).expand(h, w)
    return torch.stack([xs, ys])[None].clone()


INPUTS = ("noise", "meshgrid", "image")


def make_input(kind: str, channels: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "noise":
        return noise_input(channels, h, w, generator)
    if kind == "meshgrid":
        return meshgrid_input(h, w)
    if kind == "image":  # flash/no-flash: the caller's image is the input (fit's input_image)
        raise ValueError("input 'image' needs the input image itself (fit(..., input_image=...))")
    raise ValueError(f"unknown input kind {kind!r}; choose one of {', '.join(INPUTS)}")


def input_channels(kind: str, depth: int) -> int:
    return 2 if kind == "meshgrid" else depth


def perturb(z: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """z + N(0, std²), a fresh draw every call; the identity when std is 0."""
    if std == 0:
        return z
    noise = torch.randn(z.shape, generator=generator, device=generator.device)
    return z + std * noise.to(z.device)
