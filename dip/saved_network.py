"""A fitted network kept after a fit, and a fit started from one.

`dip fit --save-network` (or ``dip.restore(..., save_network=PATH)``) writes ``network.pt``: the weights a
fit ended with, its input z and the architecture spec, enough to rebuild the network without the fit.
`load_network` rebuilds it; `dip fit --init-from DIR` (``dip.restore(..., init_from=PATH)``) starts a
new fit from those weights and that z instead of drawing them from the seed (the per-iteration
perturbation still comes from the seed's own stream, `dip.seeds`).

The file is a ``torch.save`` of a plain dict (loadable with ``torch.load(path, weights_only=True)``):

=============  ===========================================================================================
key            value
=============  ===========================================================================================
format         FORMAT (1): the layout of this dict
spec           the architecture spec, ``{"kind": "skip", ...}`` (`dip.networks.make_network`)
state_dict     the network's ``state_dict()`` (parameters; BatchNorm's running statistics are never used:
               BatchNorm stays in training mode, METHOD.md)
z              the network's input (1, D, h, w), float32, without the per-iteration perturbation
height, width  the image size H×W the network restores (its output is centre-cropped to it)
channels       the image's channels C (the network's output channels)
iteration      the iteration the weights are from: the last one the fit ran (the one its stopping rule
               ended it at, or the budget)
seed           the network seed of the fit that made it
task           what was fitted: the task's parameters (``dip fit``) or the operator's class (`dip.restore`)
output         f(z) of these weights (1, C, H, W), BatchNorm in training mode: what `load_network`'s
               module reproduces. Not the fit's reported image: that is the EMA of the outputs (or the
               stopping rule's kept image), which no single set of weights computes
=============  ===========================================================================================
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dip import networks
from dip.image_io import atomic_write

FORMAT = 1
FILE = "network.pt"  # its name in a fit's output folder


class Cropped(nn.Module):
    """A network whose output is centre-cropped to the image's H×W (the Deep Decoder's is larger)."""

    def __init__(self, net: nn.Module, height: int, width: int):
        super().__init__()
        self.net, self.height, self.width = net, height, width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return networks.center_crop(self.net(z), self.height, self.width)


@dataclass
class SavedNetwork:
    """The contents of a ``network.pt`` (see the module docstring for each field); `sha256` is the file's
    content hash when it was read from one (what a fit started from it records in its fingerprint)."""

    spec: dict
    state_dict: dict
    z: torch.Tensor
    height: int
    width: int
    channels: int
    iteration: int
    seed: int
    task: dict | str | None = None
    output: torch.Tensor | None = None
    sha256: str | None = None

    @property
    def z_channels(self) -> int:
        return int(self.z.shape[1])

    def network(self) -> nn.Module:
        """The network with these weights, on the CPU, in training mode (BatchNorm uses batch statistics)."""
        net = networks.make_network(self.spec, self.z_channels, self.channels, seed=0)  # weights replaced below
        net.load_state_dict(self.state_dict)
        return net.train()

    def save(self, path: str | Path) -> Path:
        """Write the file (atomically) and return its path."""
        payload = {
            "format": FORMAT,
            "spec": self.spec,
            "state_dict": self.state_dict,
            "z": self.z,
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "iteration": self.iteration,
            "seed": self.seed,
            "task": self.task,
            "output": self.output,
        }
        path = Path(path)
        atomic_write(path, lambda tmp: torch.save(payload, tmp))
        return path


def from_weights(
    spec: dict,
    weights: list[torch.Tensor],
    z: torch.Tensor,
    height: int,
    width: int,
    channels: int,
    iteration: int,
    seed: int,
    task: dict | str | None = None,
) -> SavedNetwork:
    """A SavedNetwork of one fit's weights and input z (1, D, h, w), from a fit restoring a
    `channels`×`height`×`width` image: `weights` are the fit's parameters in the order of
    ``make_network(spec, D, channels, ...).parameters()`` (one fit's slice for batched fits). Computes the
    output these weights give (training mode), which a loaded network is checked against.

    :raises ValueError: the weights do not fit the architecture (their count or a shape differs).
    """
    net = networks.make_network(spec, int(z.shape[1]), channels, seed=0)
    params = list(net.parameters())
    if len(params) != len(weights) or any(p.shape != w.shape for p, w in zip(params, weights)):
        raise ValueError("the fit's weights do not match the architecture spec they were built from")
    with torch.no_grad():
        for p, w in zip(params, weights):
            p.copy_(w.detach().float().cpu())
    z = z.detach().float().cpu().contiguous()
    saved = SavedNetwork(
        spec=dict(spec),
        state_dict={k: v.clone() for k, v in net.state_dict().items()},
        z=z,
        height=int(height),
        width=int(width),
        channels=int(channels),
        iteration=int(iteration),
        seed=int(seed),
        task=task,
    )
    with torch.no_grad():
        saved.output = Cropped(saved.network(), height, width)(z)
    return saved


def network_file(path: str | Path) -> Path:
    """The file `path` names: a folder (a fit's output) means its ``network.pt``."""
    path = Path(path)
    return path / FILE if path.is_dir() else path


def read_network(path: str | Path) -> SavedNetwork:
    """Read a ``network.pt`` (or a folder holding one).

    :raises ValueError: one line naming the file: missing, not a saved network, or of another format.
    """
    file = network_file(path)
    if not file.is_file():
        raise ValueError(f"{file}: no saved network there (write one with dip fit --save-network)")
    data = file.read_bytes()
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same answer
        raise ValueError(f"{file}: not a saved network ({type(err).__name__})") from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise ValueError(f"{file}: not a saved network (no format entry)")
    if payload["format"] != FORMAT:
        raise ValueError(f"{file}: saved network format {payload['format']}, this dip reads format {FORMAT}")
    fields = ("spec", "state_dict", "z", "height", "width", "channels", "iteration", "seed", "task", "output")
    missing = [k for k in fields if k not in payload]
    if missing:
        raise ValueError(f"{file}: not a saved network (missing {', '.join(missing)})")
    return SavedNetwork(**{k: payload[k] for k in fields}, sha256=hashlib.sha256(data).hexdigest())


def load_network(path: str | Path) -> tuple[nn.Module, torch.Tensor]:
    """Rebuild a saved network: ``(module, z)`` with ``module(z)`` the image (1, C, H, W) its weights give,
    equal to the file's ``output`` to float precision. The module is in training mode, as during the fit
    (BatchNorm uses the batch statistics of the one image); call it under ``torch.no_grad()`` to evaluate.

    :param path: a ``network.pt`` or an output folder of ``dip fit --save-network`` holding one.
    :raises ValueError: one line naming the file (see `read_network`).

    >>> import tempfile, torch
    >>> from dip.saved_network import from_weights
    >>> from dip.networks import make_network
    >>> spec = {"kind": "skip", "channels_down": [8, 8], "channels_up": [8, 8], "channels_skip": [2, 2]}
    >>> z = torch.rand(1, 4, 16, 16) * 0.1
    >>> weights = list(make_network(spec, 4, 3, seed=1).parameters())
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = from_weights(spec, weights, z, 16, 16, 3, iteration=0, seed=1).save(folder + "/network.pt")
    ...     module, z_loaded = load_network(folder)
    >>> with torch.no_grad():
    ...     module(z_loaded).shape
    torch.Size([1, 3, 16, 16])
    """
    saved = read_network(path)
    return Cropped(saved.network(), saved.height, saved.width), saved.z


def check_init(init: SavedNetwork, spec: dict, height: int, width: int, channels: int, z_channels: int) -> None:
    """Whether a fit of network `spec` restoring a `channels`×`height`×`width` image from an input z of
    `z_channels` channels can start from `init`.

    :raises ValueError: one line naming each thing that differs (architecture, image size, channels, input z).
    """
    differs = []
    if dict(init.spec) != dict(spec):
        keys = [k for k in dict.fromkeys([*init.spec, *spec]) if init.spec.get(k) != spec.get(k)]
        differs.append("architecture (" + ", ".join(f"{k} {init.spec.get(k)} vs {spec.get(k)}" for k in keys) + ")")
    if (init.height, init.width) != (height, width):
        differs.append(f"image size {init.height}x{init.width} vs {height}x{width}")
    if init.channels != channels:
        differs.append(f"channels {init.channels} vs {channels}")
    if init.z_channels != z_channels:
        differs.append(f"input depth {init.z_channels} vs {z_channels}")
    if not differs:  # the same network and image: z's spatial size is the network's for that image
        want = networks.input_size(init.network(), init.height, init.width)
        if tuple(init.z.shape[-2:]) != tuple(want) or init.z.shape[0] != 1:
            differs.append(f"input z {tuple(init.z.shape)} vs {(1, z_channels, *want)}")
    if differs:
        raise ValueError(f"the saved network was fitted with another setup: {'; '.join(differs)} (saved vs this fit)")


def read_init(path: str | Path, spec: dict, height: int, width: int, channels: int, settings) -> SavedNetwork:
    """The saved network at `path` (a file or a folder holding ``network.pt``) to start a fit of network
    `spec` from, restoring a `channels`×`height`×`width` image with `settings` (dip.fit.FitSettings: its
    input kind and depth give z's channels).

    :raises ValueError: one line naming the file and what differs (`check_init`), or why it is unreadable.
    """
    from dip.inputs import input_channels

    file = network_file(path)
    if settings.input == "image":
        raise ValueError(f"{file}: this fit's input is an image (flash), not a saved z; start it from its seed")
    init = read_network(file)
    try:
        check_init(init, spec, height, width, channels, input_channels(settings.input, settings.input_depth))
    except ValueError as err:
        raise ValueError(f"{file}: {err}") from None
    return init


def init_identity(init: SavedNetwork | None) -> dict:
    """What a fit started from `init` adds to its fingerprint (dip.checkpoint.fingerprint): the file's
    content hash, so that a checkpoint never resumes a fit started from other weights; nothing without."""
    return {} if init is None else {"init network": init.sha256}


__all__ = ["FORMAT", "FILE", "SavedNetwork", "from_weights", "read_network", "load_network", "read_init", "check_init"]
