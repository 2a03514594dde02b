"""The networks f_θ that Deep Image Prior fits: the paper's encoder-decoders and newer ones.

All of them are randomly initialised (never pretrained) and map a fixed input z of shape
(1, C, H, W) to an image (1, out_channels, H, W) in [0, 1]. Any H×W is accepted: a network whose
scales need sides divisible by 2^k pads its input (reflection, or replication where the input is
too small to reflect) and centre-crops the output back, so no caller has to crop images first.
The Deep Decoder is the exception by design: its input is a small tensor that it upsamples,
see `DeepDecoder.input_size`.

BatchNorm layers are meant to stay in training mode (`fit` never calls `.eval()`): the paper's
output is always computed with the batch statistics of the single image.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, pad: str = "reflection") -> nn.Module:
    """A convolution preceded by its own padding layer, as the original code builds it."""
    p = (kernel - 1) // 2
    conv = nn.Conv2d(cin, cout, kernel, stride, padding=0 if pad == "reflection" else p)
    if pad == "reflection" and p > 0:
        return nn.Sequential(nn.ReflectionPad2d(p), conv)
    return conv


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Crop the last two dimensions of `x` to h×w around the centre."""
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


def cat_channels(tensors: list[torch.Tensor], groups: int = 1) -> torch.Tensor:
    """Concatenate (N, C_i, H, W) along channels; with `groups` (the fits of a `grouped` network) each
    tensor's channels are `groups` blocks, one per fit, and fit g's blocks are concatenated together."""
    if groups == 1:
        return torch.cat(tensors, dim=1)
    return torch.cat([t.unflatten(1, (groups, -1)) for t in tensors], dim=2).flatten(1, 2)


class Concat(nn.Module):
    """Run branches on one input and concatenate along channels, centre-cropping to the smallest."""

    groups = 1  # fits stacked as channel groups (see `grouped`)

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        h = min(o.shape[-2] for o in outs)
        w = min(o.shape[-1] for o in outs)
        return cat_channels([center_crop(o, h, w) for o in outs], self.groups)


class AnySize(nn.Module):
    """Pad the input to a size the wrapped network can take, crop its output back to H×W."""

    def __init__(self, body: nn.Module, multiple: int, minimum: int):
        super().__init__()
        self.body, self.multiple, self.minimum = body, multiple, minimum

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, w = z.shape[-2:]
        ph = max(self.minimum, math.ceil(h / self.multiple) * self.multiple) - h
        pw = max(self.minimum, math.ceil(w / self.multiple) * self.multiple) - w
        if ph or pw:
            pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
            mode = "reflect" if max(pads[:2]) < w and max(pads[2:]) < h else "replicate"
            z = F.pad(z, pads, mode=mode)
        return center_crop(self.body(z), h, w)


def _per_scale(value: int | Sequence, n: int) -> list:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value] * n


def skip(
    in_channels: int = 32,
    out_channels: int = 3,
    channels_down: Sequence[int] = (128,) * 5,
    channels_up: Sequence[int] = (128,) * 5,
    channels_skip: Sequence[int] = (4,) * 5,
    filter_down: int | Sequence[int] = 3,
    filter_up: int | Sequence[int] = 3,
    filter_skip: int = 1,
    upsample: str | Sequence[str] = "bilinear",
    need_1x1_up: bool = True,
    pad: str = "reflection",
) -> nn.Module:
    """The paper's encoder-decoder with skip connections ("skip" in the original code).

    Per scale i, from that scale's input: skip = conv1×1 → BN → act (absent when skip channels are 0);
    deeper = conv stride 2 → BN → act → conv → BN → act → [scale i+1] → upsample ×2; then
    concat(skip, deeper) → BN → conv → BN → act → conv1×1 → BN → act. After scale 0: conv1×1 → sigmoid.
    Bilinear upsampling uses align_corners=False; BatchNorm2d has PyTorch's default init (weight 1).
    """
    n = len(channels_down)
    if not (len(channels_up) == len(channels_skip) == n):
        raise ValueError("channels_down, channels_up and channels_skip need one entry per scale")
    fd, fu, up = _per_scale(filter_down, n), _per_scale(filter_up, n), _per_scale(upsample, n)
    root = nn.Sequential()
    level, cin = root, in_channels
    for i in range(n):
        deeper, inner = nn.Sequential(), nn.Sequential()
        deeper.append(_conv(cin, channels_down[i], fd[i], 2, pad))
        deeper.extend([nn.BatchNorm2d(channels_down[i]), _act()])
        deeper.append(_conv(channels_down[i], channels_down[i], fd[i], 1, pad))
        deeper.extend([nn.BatchNorm2d(channels_down[i]), _act()])
        if i < n - 1:
            deeper.append(inner)
        k = channels_up[i + 1] if i < n - 1 else channels_down[i]
        align = False if up[i] == "bilinear" else None
        deeper.append(nn.Upsample(scale_factor=2, mode=up[i], align_corners=align))
        if channels_skip[i]:
            branch = nn.Sequential(
                _conv(cin, channels_skip[i], filter_skip, 1, pad), nn.BatchNorm2d(channels_skip[i]), _act()
            )
            level.append(Concat(branch, deeper))
        else:
            level.append(deeper)
        level.append(nn.BatchNorm2d(channels_skip[i] + k))
        level.append(_conv(channels_skip[i] + k, channels_up[i], fu[i], 1, pad))
        level.extend([nn.BatchNorm2d(channels_up[i]), _act()])
        if need_1x1_up:
            level.append(_conv(channels_up[i], channels_up[i], 1, 1, pad))
            level.extend([nn.BatchNorm2d(channels_up[i]), _act()])
        cin, level = channels_down[i], inner
    root.extend([nn.Conv2d(channels_up[0], out_channels, 1), nn.Sigmoid()])
    # Reflection padding needs more pixels than it pads: the deepest scale must keep ≥ pad + 1 px.
    pad = (max(fd + fu) - 1) // 2
    return AnySize(root, multiple=2**n, minimum=2**n * (pad + 1))


def hourglass(
    in_channels: int = 32, out_channels: int = 3, scales: int = 5, channels: int = 128, upsample: str = "bilinear"
) -> nn.Module:
    """The encoder-decoder without skip connections; `scales` gives the depth-limited ablation variants."""
    return skip(in_channels, out_channels, (channels,) * scales, (channels,) * scales, (0,) * scales, upsample=upsample)


class _UNetBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.InstanceNorm2d(cout, affine=True),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.InstanceNorm2d(cout, affine=True),
            nn.ReLU(),
        )


class _UNet(nn.Module):
    groups = 1  # fits stacked as channel groups (see `grouped`)

    def __init__(self, in_channels: int, out_channels: int, filters: Sequence[int]):
        super().__init__()
        self.start = _UNetBlock(in_channels, filters[0])
        self.down = nn.ModuleList(_UNetBlock(a, b) for a, b in zip(filters, filters[1:]))
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 4, stride=2, padding=1) for a, b in zip(filters, filters[1:]))
        self.merge = nn.ModuleList(_UNetBlock(2 * a, a) for a in filters[:-1])
        self.final = nn.Sequential(nn.Conv2d(filters[0], out_channels, 1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.start(z)
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(F.max_pool2d(x, 2))
        for i in reversed(range(len(self.up))):
            x = self.merge[i](cat_channels([skips[i], self.up[i](x)], self.groups))
        return self.final(x)


def unet(in_channels: int = 32, out_channels: int = 3, feature_scale: int = 8) -> nn.Module:
    """U-Net of the paper's supplementary material: 4 max-pool downsamplings, transposed-conv
    upsampling, InstanceNorm, zero padding; filters (64, 128, 256, 512, 1024) / feature_scale."""
    filters = [c // feature_scale for c in (64, 128, 256, 512, 1024)]
    return AnySize(_UNet(in_channels, out_channels, filters), multiple=16, minimum=16)


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels, 3),
            nn.BatchNorm2d(channels),
            _act(),
            _conv(channels, channels, 3),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet(in_channels: int = 32, out_channels: int = 3, blocks: int = 8, channels: int = 32) -> nn.Module:
    """ResNet of the supplementary material: residual blocks at full resolution, reflection padding."""
    return nn.Sequential(
        _conv(in_channels, channels, 3),
        _act(),
        *[_Residual(channels) for _ in range(blocks)],
        _conv(channels, channels, 3),
        nn.BatchNorm2d(channels),
        _act(),
        _conv(channels, out_channels, 3),
        nn.Sigmoid(),
    )


class DeepDecoder(nn.Module):
    """Deep Decoder (Heckel & Hand, ICLR 2019): 1×1 convs, bilinear ×2 upsampling, ReLU and channel
    normalisation, no convolution wider than one pixel. Its input is a k×(H/2^L)×(W/2^L) tensor;
    the output is (H', W') ≥ (H, W) and `fit` crops it to the image."""

    def __init__(self, channels: int = 64, layers: int = 5, out_channels: int = 3):
        super().__init__()
        self.layers = layers
        body = []
        for _ in range(layers):
            body += [
                nn.Conv2d(channels, channels, 1, bias=False),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.ReLU(),
                nn.BatchNorm2d(channels),
            ]
        body += [
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.ReLU(),
            nn.BatchNorm2d(channels),
            nn.Conv2d(channels, out_channels, 1, bias=False),
            nn.Sigmoid(),
        ]
        self.body = nn.Sequential(*body)

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        return math.ceil(h / 2**self.layers), math.ceil(w / 2**self.layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


def deep_decoder(in_channels: int = 64, out_channels: int = 3, layers: int = 5) -> nn.Module:
    return DeepDecoder(in_channels, layers, out_channels)


def _grouped_layer(layers: list[nn.Module]) -> nn.Module:
    """One layer holding the same layer of B networks as B channel groups, each group with its
    network's own weights; layers without weights are shared as they are."""
    first, fits = layers[0], len(layers)
    if isinstance(first, (nn.Conv2d, nn.ConvTranspose2d)):
        kind = type(first)
        layer = kind(
            first.in_channels * fits,
            first.out_channels * fits,
            first.kernel_size,
            first.stride,
            first.padding,
            **({"output_padding": first.output_padding} if kind is nn.ConvTranspose2d else {}),
            groups=first.groups * fits,
            bias=first.bias is not None,
            dilation=first.dilation,
            padding_mode=first.padding_mode,
        )
    elif isinstance(first, (nn.BatchNorm2d, nn.InstanceNorm2d)):
        # DIP never uses running statistics (the networks always train): the group layer keeps none.
        layer = type(first)(first.num_features * fits, eps=first.eps, affine=first.affine, track_running_stats=False)
    elif any(True for _ in first.parameters(recurse=False)):
        raise ValueError(f"{type(first).__name__} layers cannot be batched; fit one seed at a time")
    else:
        return first
    with torch.no_grad():
        for name, param in layer.named_parameters(recurse=False):
            param.copy_(torch.cat([getattr(m, name) for m in layers]))
    return layer


class Grouped(nn.Module):
    """B networks of one architecture as one: every layer runs the B fits as channel groups (grouped
    convolutions, per-channel normalisation), so a forward pass dispatches as many operations as one
    network's, whatever B. Input (B, C, H, W) → output (B, C', H', W'); fit b's weights are slice b
    of every parameter's dimension 0 once unflattened to (B, ...) (`per_fit`)."""

    def __init__(self, nets: list[nn.Module]):
        super().__init__()
        self.fits = len(nets)
        self.body = copy.deepcopy(nets[0])
        modules = [dict(n.named_modules()) for n in nets]
        for name, _ in list(self.body.named_modules()):
            if not name:
                continue
            parent, _, leaf = name.rpartition(".")
            owner = self.body.get_submodule(parent) if parent else self.body
            layer = _grouped_layer([m[name] for m in modules])
            if layer is not modules[0][name]:
                setattr(owner, leaf, layer)
        for m in self.body.modules():
            if isinstance(m, (Concat, _UNet)):  # their channel concatenations keep each fit's channels together
                m.groups = self.fits

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        return input_size(self.body, h, w)

    def per_fit(self) -> list[torch.Tensor]:
        """Every parameter viewed as (B, ...): fit b's weights are element b (views: updates go through)."""
        return [p.unflatten(0, (self.fits, -1)) for p in self.parameters()]

    def forward(self, zs: torch.Tensor) -> torch.Tensor:
        out = self.body(zs.reshape(1, -1, *zs.shape[-2:]))
        return out.unflatten(1, (self.fits, -1))[0]


def input_size(net: nn.Module, h: int, w: int) -> tuple[int, int]:
    """Spatial size of the input z a network needs to produce an h×w image."""
    return net.input_size(h, w) if hasattr(net, "input_size") else (h, w)


class Checkpointed(nn.Module):
    """A run of consecutive layers whose activations are not kept for the backward pass: only the run's
    input is, and the backward pass runs the layers forward again to get them (activation checkpointing,
    torch.utils.checkpoint, non-reentrant). The same output and gradients as the plain run, for the memory
    of the run's input instead of every layer's output, at the cost of a second forward pass.

    The second pass must be the first one again: torch's random state is restored before it
    (preserve_rng_state; DIP's layers draw nothing, the input perturbation is drawn before the network),
    and the BatchNorm layers' running statistics, which training-mode BatchNorm updates at every pass,
    are put back as the first pass left them, so that they are updated once per iteration as in the plain
    network. (DIP's outputs never use them: BatchNorm stays in training mode, normalising with the
    batch's own statistics, which the second pass computes from the same input alike.)
    """

    def __init__(self, layers: Sequence[nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self._norms = [m for m in self.layers.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.layers(x)
        calls = []  # the first call is the forward pass, any later one the recomputation in backward
        return torch.utils.checkpoint.checkpoint(self._run, x, calls, use_reentrant=False, preserve_rng_state=True)

    def _run(self, x: torch.Tensor, calls: list) -> torch.Tensor:
        calls.append(None)
        if len(calls) == 1:
            return self.layers(x)
        kept = [
            (m, [b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)])
            for m in self._norms
            if m.running_mean is not None
        ]
        try:  # the recomputation may stop early, by an exception, once it has what backward needs
            return self.layers(x)
        finally:
            with torch.no_grad():
                for m, (mean, var, count) in kept:
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    m.num_batches_tracked.copy_(count)


CHECKPOINT_RUN = 4  # layers per checkpointed run at most: a run's recomputed activations are the peak's
#                     share it still holds; measured with `python -m dip.memory --checkpointed`


def _is_layer(m: nn.Module) -> bool:
    """A layer, or a padded convolution (_conv's pad + conv): what a checkpointed run is made of. Anything
    holding a deeper structure (a scale of the network, a residual block, a branch) is recursed into."""
    if isinstance(m, (Concat, AnySize, Grouped, Checkpointed)) or isinstance(m, nn.ModuleList):
        return False
    if isinstance(m, nn.Sequential):
        return len(m) <= 2 and all(_is_layer(c) and not isinstance(c, nn.Sequential) for c in m)
    return not any(True for _ in m.children()) or not any(
        isinstance(c, (nn.Sequential, Concat, nn.ModuleList)) for c in m.modules() if c is not m
    )


def _checkpoint_children(module: nn.Module, run: int) -> None:
    """Replace, inside `module`, every run of consecutive layers of a Sequential by Checkpointed pieces of
    at most `run` layers; recurse into everything else."""
    if isinstance(module, nn.Sequential) and not _is_layer(module):
        children, pieces, current = list(module), [], []
        for child in children:
            if _is_layer(child):
                current.append(child)
                if len(current) == run:
                    pieces.append(Checkpointed(current))
                    current = []
                continue
            if current:
                pieces.append(Checkpointed(current))
                current = []
            _checkpoint_children(child, run)
            pieces.append(child)
        if current:
            pieces.append(Checkpointed(current))
        for name in list(module._modules):
            del module._modules[name]
        for i, piece in enumerate(pieces):
            module.add_module(str(i), piece)
        return
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Sequential) and _is_layer(child) and len(child) > 1 and child is not module:
            setattr(module, name, Checkpointed(list(child)))
        elif not _is_layer(child):
            _checkpoint_children(child, run)


def checkpointed(net: nn.Module, run: int | None = None) -> nn.Module:
    """`net` with its layers' activations recomputed in the backward pass instead of kept (memory-saving
    mode): each scale's runs of consecutive layers become `Checkpointed` pieces of at most `run` layers,
    so the backward pass holds the pieces' inputs plus one piece's recomputed activations at a time.
    Changed in place and returned; the parameters are the same objects (an optimiser built before or
    after sees them alike) and the outputs and gradients are the plain network's."""
    if isinstance(net, nn.Sequential) and _is_layer(net):  # a single run: checkpointed in pieces as well
        wrapper = nn.Sequential(*net)
        _checkpoint_children(wrapper, run)
        return wrapper
    _checkpoint_children(net, run)
    return net


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


BUILDERS = {"skip": skip, "hourglass": hourglass, "unet": unet, "resnet": resnet, "deep_decoder": deep_decoder}


def make_network(arch: dict, in_channels: int, out_channels: int, seed: int) -> nn.Module:
    """Build an architecture spec {"kind": ..., options...} with weights drawn from the `weights`
    stream of the network seed `seed` (dip.seeds)."""
    from dip.seeds import weights_stream

    options = {k: v for k, v in arch.items() if k != "kind"}
    with weights_stream(seed):
        return build(arch["kind"], in_channels, out_channels, **options)


def build(kind: str, in_channels: int, out_channels: int, **options) -> nn.Module:
    """Build a network by builder name (see `BUILDERS`) with builder-specific options."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown network builder {kind!r}; choose one of {sorted(BUILDERS)}")
    return BUILDERS[kind](in_channels=in_channels, out_channels=out_channels, **options)
