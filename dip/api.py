"""`restore`: Deep Image Prior for an observation and a forward operator of your own, from Python.

The one entry point for a user's inverse problem (MRI, tomography, compressed sensing, a camera's own
blur): it checks what it is given, builds the stopping rules, the held-out pixels and the checkpoint's
fingerprint, and hands the fit to `dip.fit.fit` (one seed) or `dip.fit.fit_batch` (several seeds as one
batched network), so that every feature of the loop applies: output EMA, input perturbation,
backtracking, ground-truth-free stopping, checkpoints with exact resume, batching, any device.
What an operator must provide is in the docstring of `dip.operators.Operator`.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path

import torch

from dip import __version__
from dip.checks import is_integer, is_number
from dip.defaults import for_operator, operator_preset
from dip.devices import pick_device
from dip.fit import FitResult, FitSettings, fit, fit_batch
from dip.operators import HeldOut, Inpaint, Operator
from dip.presets import PAPER, architecture
from dip.provenance import content_hash
from dip.red import RED
from dip.risk import risk_estimate
from dip.saved_network import init_identity, read_init
from dip.seeds import SCHEME, generator
from dip.stopping import HOLDOUT, RULES, make_rule

LOSSES = ("default", "sure")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def restore(
    observed: torch.Tensor,
    operator: Operator,
    *,
    arch: str | Mapping | None = None,
    settings: FitSettings | Mapping | None = None,
    stop: str | None = "default",
    record: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "auto",
    clean: torch.Tensor | None = None,
    noise_sigma: float | None = None,
    holdout: float | None = None,
    window: int = 100,
    patience: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = _stderr,
    save_network: str | Path | None = None,
    init_from: str | Path | None = None,
    loss: str = "default",
    red_weight: float = 0.0,
    memory_saving: bool = False,
    checkpoint_every: int | None = None,
) -> FitResult | list[FitResult]:
    """Fit Deep Image Prior to `observed` through `operator` and return the restored image.

    The network f_θ (weights and input z drawn from the seed) is fitted so that operator(f_θ(z)) matches
    `observed`, with the loop's every feature: output EMA, input perturbation, backtracking on a collapse
    or a non-finite loss, a stopping rule, checkpoints and batched seeds.

    :param observed: the observation y, a float tensor (1, C, H', W') as `operator.forward` returns it for
        one image (or (S, C, H', W'), one per seed, with `seeds`). C is the image's channel count (the
        network outputs C channels); H'×W' is whatever the operator makes (`operator.image_size` gives the
        image's H×W when it is not H'×W'). Any range of values; it is moved to `device`.
    :param operator: the forward operator H, an object following `dip.operators.Operator` (subclass it):
        `forward(x)` for x (N, C, H, W) → (N, C, H', W'), differentiable by autograd; `loss(output,
        observed)` → one data term per fit, shape (N,) (the base class: MSE of forward(output) to observed).
    :param arch: a name of `dip.presets.ARCHITECTURES` (its settings, e.g. its input depth, apply under
        `settings`) or a network spec dict such as ``{"kind": "skip", "scales": 4}``. Default (None): the
        network `dip fit` uses for the operator's task (`dip.defaults.operator_preset`: e.g. ``"unet"`` for
        `dip.operators.Blur`), else ``"skip"``, the paper's.
    :param settings: a `dip.fit.FitSettings` (used as given), or a dict of its fields to change from the
        settings `dip fit` uses for the operator's task: its paper preset (`dip.presets.PAPER`; for
        `dip.operators.SuperResolve(4)` 2000 iterations and input perturbation 0.03), with the task's default
        budget for the image's size where `stop` is ``"default"`` (`dip.defaults.Default.budget`: for
        deblurring 6000 iterations up to 128×128, more above), then the architecture's own. For any other
        operator, and for `dip.operators.Inpaint` (its mask's kind, which picks the preset, is not in the
        tensor), `FitSettings()`: the paper's denoising settings, 3000 iterations, Adam at lr 0.01, input
        perturbation 1/30, EMA 0.99, backtracking on a 5 dB collapse of the fit to the observation.
        `settings.seed` is the network seed of a single fit.
    :param stop: the rule that ends the fit (`dip.stopping.RULES`): ``"default"`` (the default: the rule of
        `dip.defaults` for the operator's task where it is one of the package's task operators, e.g.
        `dip.operators.Denoise`, and `dip.defaults.GENERIC` for any other: the guarded ES-WMV rule), ``"es-wmv"``
        (the guarded windowed-variance rule, needs no ground truth and no noise level), ``"es-wmv-paper"``,
        ``"es-emv"``, ``"discrepancy"`` (needs `noise_sigma`), ``"holdout"`` (holds `holdout` of the
        observation's entries out of the loss; the operator must give its data term per entry,
        `Operator.pointwise_loss`), ``"risk"`` (with ``loss="sure"`` only, and its default: the image where
        the risk estimate, averaged over 25 iterations, first falls to 0; `dip.stopping.RiskStop`), or
        ``"fixed"`` / None: run the whole budget.
    :param record: other rules to record without stopping (where each would have stopped:
        ``result.stops``).
    :param seeds: network seeds to fit as one batched network (Adam only); None: one fit of
        `settings.seed`. With seeds the result is a list, one `FitResult` per seed.
    :param checkpoint: a file to keep the fit's full state in (every 10 % of the fit, every 60 s, and on
        SIGTERM/SIGINT); if it exists and holds this fit (same observation, operator state, settings, seeds,
        rules), the fit resumes from it and ends exactly as an uninterrupted one; a checkpoint of another fit
        raises `dip.checkpoint.CheckpointMismatch`. It is deleted when the fit ends (kept when it is interrupted,
        `dip.fit.FitInterrupted`, runs out of memory or fails).
    :param device: ``"auto"`` (CUDA, else MPS, else the CPU), ``"cpu"``, ``"cuda:N"``, ``"mps"``.
    :param clean: the ground truth (1, C, H, W) in [0, 1], if known: only for the history's PSNR/SSIM
        columns, never used by the fit.
    :param noise_sigma: the standard deviation of the observation's noise in the observation's units, for
        the discrepancy rule: its target is σ², the MSE that reproducing the clean image leaves (right for
        the base class's MSE loss and unclipped Gaussian noise).
    :param holdout: the fraction in (0, 0.5) of the observation's entries (its last two dimensions, every
        channel) held out of the loss for the holdout rule; default with ``stop="holdout"``: 0.05.
    :param window: ES-WMV's window and the iteration ES-EMV starts at.
    :param patience: the holdout and variance rules' patience; default a tenth of the budget for the holdout
        rule, a fifth for the variance rules (`dip.stopping.default_patience`).
    :param progress: a progress bar (a terminal) or a line per tenth of the fit (a log) on stderr.
    :param log: where the loop's messages go (backtracking, resuming); default stderr.
    :param save_network: a file to keep the fitted network in (`dip.saved_network`: the weights of the fit's
        last iteration, its input z, the architecture; `dip.load_network` rebuilds it); with `seeds` it must
        hold ``{seed}``, one file per seed. Each result's ``.network`` holds the same.
    :param init_from: a saved network (a file, or a folder holding ``network.pt``) to start from: its
        weights and z instead of those the seed draws (the per-iteration perturbation stays the seed's); it
        must have the same architecture, image size, channels and input depth. Its content hash is part of
        the checkpoint's fingerprint.
    :param loss: the data term: ``"default"``, the operator's own `loss`; ``"sure"``, a risk estimate of the
        error to the clean image (`dip.risk`): SURE for Gaussian denoising (`dip.operators.Denoise` or the
        identity `Operator`; σ from `noise_sigma`, else the Denoise operator's), PURE for Poisson denoising
        (`dip.operators.Poisson` with its peak). The network's input is then the observation itself
        (settings.input is set to ``"image"``) and each iteration runs a second forward pass for the
        Monte-Carlo divergence. Any other operator raises ValueError.
    :param red_weight: λ of a regularisation-by-denoising term (DeepRED, `dip.red.RED`: non-local means as
        the denoiser, tied to the network's output by ADMM); 0, the default, fits without one.
    :param memory_saving: recompute the network's activations in the backward pass instead of keeping them
        (`dip.networks.checkpointed`): the same fit for less memory and more time per iteration.
    :param checkpoint_every: iterations between the checkpoint's saves (default: 10 % of the fit).
    :returns: a `dip.fit.FitResult` (``.image`` (1, C, H, W) on the CPU, ``.history``, ``.stops``;
        ``.returned_by``, the rule whose image ``.image`` is, and ``.returned_iteration``: None and the
        last iteration where no rule decided, what `dip fit` prints as "fixed"), or a list of them with `seeds`.
    :raises TypeError, ValueError: one line naming the argument, before anything is fitted or written.
    :raises dip.fit.FitFailed: a single fit that keeps diverging, with the image and history it had verified
        (``.image``, ``.history``); a batched one returns with ``error`` set.

    A tiny example (an operator that keeps the left half of the image; 3 iterations):

    >>> import torch
    >>> from dip import restore
    >>> from dip.operators import Operator
    >>> class LeftHalf(Operator):
    ...     def forward(self, x):
    ...         return x[..., : x.shape[-1] // 2]
    ...     def image_size(self, observed):
    ...         return observed.shape[-2], 2 * observed.shape[-1]
    >>> y = torch.rand(1, 1, 32, 16)
    >>> result = restore(y, LeftHalf(), arch="skip-3", settings={"iterations": 3}, device="cpu")
    >>> result.image.shape
    torch.Size([1, 1, 32, 32])
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: {loss!r} is not one of {', '.join(LOSSES)}")
    seeds = _check_scalars(seeds, window, patience, checkpoint_every, noise_sigma, holdout)
    if checkpoint is not None and Path(checkpoint).is_dir():
        raise ValueError(f"checkpoint: the file to save the fit's state in, got the folder {checkpoint}")
    arch, preset = _task_preset(operator, arch, stop, loss, observed)
    observed, settings, spec, stacked = _check(observed, operator, arch, settings, seeds, loss, preset)
    if not (is_number(red_weight) and 0 <= red_weight < math.inf):
        raise ValueError(f"red_weight: must be a finite number >= 0, got {red_weight!r}")
    risk = None
    if loss == "sure":
        try:
            risk = risk_estimate(operator, noise_sigma)
        except ValueError as err:
            raise ValueError(f"loss: {err}") from None
    if stop == "default":
        stop = for_operator(operator, loss).stop
    rules_named = _rule_names(stop, record)
    if risk is not None and "discrepancy" in rules_named:
        raise ValueError("stop: the discrepancy rule compares the MSE data term with σ²; a SURE/PURE loss is not it")
    if risk is None and "risk" in rules_named:
        raise ValueError("stop: the risk rule watches a risk-estimate data term; give loss='sure' (SURE or PURE)")
    if "discrepancy" in rules_named and (noise_sigma is None or not math.isfinite(noise_sigma) or noise_sigma <= 0):
        raise ValueError(
            f"noise_sigma: the discrepancy rule needs the noise's standard deviation > 0, got {noise_sigma}"
        )
    if holdout is None and "holdout" in rules_named:
        holdout = HOLDOUT
    if holdout is not None and not 0 < holdout < 0.5:
        raise ValueError(f"holdout: the fraction held out must be in (0, 0.5), got {holdout}")
    if holdout and risk is not None:
        raise ValueError("holdout: a SURE/PURE loss sees every pixel (the observation is the network's input)")
    if holdout and "holdout" not in rules_named:
        raise ValueError("holdout: entries held out serve only the holdout rule; add 'holdout' to stop or record")
    if window <= 0 or (patience is not None and patience <= 0):
        raise ValueError(f"window and patience must be > 0, got {window} and {patience}")
    dev = pick_device(str(device))
    seed_list = list(seeds) if stacked else [settings.seed]
    if save_network is not None and stacked and "{seed}" not in str(save_network):
        raise ValueError(f"save_network: with seeds, name one file per seed with {{seed}}, got {save_network}")
    clean = _check_clean(clean, observed, operator, len(seed_list))
    init = None
    if init_from is not None:
        h, w = (int(v) for v in operator.image_size(observed[:1]))
        try:
            init = read_init(init_from, spec, h, w, observed.shape[1], settings)
        except ValueError as err:
            raise ValueError(f"init_from: {err}") from None
    if isinstance(operator, Inpaint) and not operator.mask.any():  # (a tile of an image may lack them)
        raise ValueError("operator: the Inpaint mask has no known pixel: nothing to fit")
    operator = operator.to(dev)
    _probe(operator, observed.to(dev))

    # One operator shared by every fit (the loop calls it once for all), or each fit's own holding out that
    # fit's entries (drawn from its seed's stream).
    try:
        operators = (
            [
                HeldOut(operator, observed[b % len(observed)][None], holdout, generator(seed, "holdout"))
                for b, seed in enumerate(seed_list)
            ]
            if holdout
            else [operator]
        )
    except ValueError as err:
        raise ValueError(f"holdout: {err}") from None
    rules = [
        [
            make_rule(
                name,
                settings.iterations,
                window,
                patience,
                settings.ema,
                discrepancy=noise_sigma**2 if noise_sigma else None,
                heldout=(operators[b % len(operators)], observed[b % len(observed)][None]),
                risk=risk is not None,
            )
            for name in rules_named
        ]
        for b in range(len(seed_list))
    ]
    identity = {
        "observation": content_hash(observed),
        "operator": describe_operator(operator),
        "network": spec,
        "stop": stop,
        "stopping rules": rules_named,
        "window": window,
        "patience": patience,
        "holdout": holdout,
        "noise sigma": noise_sigma,
        "seed scheme": SCHEME,
        "version": __version__,
        **init_identity(init),
    }
    if clean is not None:
        identity["clean image"] = content_hash(clean)
    options = dict(
        clean=clean,
        stop_on=stop if stop not in (None, "fixed") else None,
        device=dev,
        checkpoint=checkpoint,
        progress=progress,
        log=log,
        fingerprint=identity,
        init=init,
        keep_network=save_network is not None,
        risk=risk,
        red=RED(weight=red_weight) if red_weight else None,
        input_image=observed if risk is not None else None,
        memory_saving=memory_saving,
        checkpoint_every=checkpoint_every,
    )
    if stacked:
        results = fit_batch(spec, operators, observed, settings, seed_list, rules=rules, **options)
    else:
        results = fit(spec, operators[0], observed, settings, rules=rules[0], **options)
    if checkpoint is not None:  # the fit has ended: nothing left to resume (as `dip fit` does)
        Path(checkpoint).unlink(missing_ok=True)
    for result in results if stacked else [results]:
        if result.network is not None:
            result.network.task = identity["operator"]["class"]
            result.network.save(str(save_network).replace("{seed}", str(result.seed)))
    return results


def _task_preset(
    operator: Operator, arch: str | Mapping | None, stop: str | None, loss: str, observed: torch.Tensor
) -> tuple[str | Mapping, dict]:
    """The network (`arch`, or the task's where None) and the settings under the caller's that `dip fit` uses
    for the task of `operator` (`dip.defaults.operator_preset`): its paper preset, with the task's default
    budget for the size of the image `observed` is restored to, where the default rule stops the fit. ("skip",
    {}) for an operator of no preset."""
    key = operator_preset(operator)
    if key is None:
        return ("skip" if arch is None else arch), {}
    name, values = PAPER[key]
    default = for_operator(operator, loss)
    if stop == "default" and default.iterations is not None:
        budget = default.iterations
        if default.grows_above and isinstance(observed, torch.Tensor) and observed.dim() == 4:  # else _check refuses it
            budget = default.budget(*(int(v) for v in operator.image_size(observed[:1])))
        values = {**values, "iterations": budget}
    return (name if arch is None else arch), values


def _check(
    observed, operator, arch, settings, seeds, loss="default", preset: Mapping | None = None
) -> tuple[torch.Tensor, FitSettings, dict, bool]:
    """One-line errors for what `restore` is given; the observation as float32, the settings (`preset`'s,
    the architecture's own, then the caller's, as `dip fit` merges them), the network."""
    if not isinstance(observed, torch.Tensor):
        raise TypeError(f"observed: must be a torch.Tensor (N, C, H, W), got {type(observed).__name__}")
    if observed.dim() != 4:
        raise ValueError(f"observed: must be 4-D (N, C, H, W), got shape {tuple(observed.shape)}")
    if observed.is_complex() or not observed.is_floating_point():
        raise ValueError(
            f"observed: must be a real floating-point tensor, got {observed.dtype} (put real and "
            "imaginary parts side by side along a dimension)"
        )
    if not torch.isfinite(observed).all():
        raise ValueError("observed: holds NaN or infinite values")
    if not callable(getattr(operator, "forward", None)):
        raise TypeError(
            f"operator: {type(operator).__name__} has no forward(x) method; subclass "
            "dip.operators.Operator and write forward"
        )
    if not isinstance(operator, Operator):
        raise TypeError(
            f"operator: {type(operator).__name__} is not a dip.operators.Operator; subclass it, which "
            "gives the loss, image_size, to and mask the loop also uses"
        )
    if isinstance(arch, str):
        named = architecture(arch)
        spec, arch_settings = named["net"], named.get("settings", {})
    elif isinstance(arch, Mapping) and "kind" in arch:
        spec, arch_settings = dict(arch), {}
    else:
        raise ValueError(f"arch: a name of dip.presets.ARCHITECTURES or a spec dict with 'kind', got {arch!r}")
    if settings is None or isinstance(settings, Mapping):
        known = {f.name for f in fields(FitSettings)}
        unknown = sorted(set(settings or {}) - known)
        if unknown:
            raise ValueError(f"settings: unknown field {unknown[0]!r}; choose from {', '.join(sorted(known))}")
        try:
            settings = FitSettings(**{**(preset or {}), **arch_settings, **(settings or {})})
        except ValueError as err:
            raise ValueError(f"settings: {err}") from None
    elif not isinstance(settings, FitSettings):
        raise TypeError(f"settings: a FitSettings or a dict of its fields, got {type(settings).__name__}")
    if loss == "sure":
        if observed.shape[0] != 1:
            raise ValueError("observed: a SURE/PURE loss fits one observation (1, C, H, W), shared by the seeds")
        settings = replace(settings, input="image")  # f must be a function of y: the input is y itself
    elif settings.input == "image":
        raise ValueError(
            "settings: input 'image' needs an input image, which restore does not take; use "
            "dip.fit.fit(..., input_image=...)"
        )
    stacked = seeds is not None
    if stacked:
        seeds = list(seeds)
        if not seeds or any(not is_integer(s) or s < 0 for s in seeds):
            raise ValueError(f"seeds: non-negative integers, at least one, got {seeds}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds: each seed once, got {seeds}")
        if settings.optimizer != "adam":
            raise ValueError("seeds: batched fits use Adam; fit LBFGS seeds one at a time")
        if observed.shape[0] not in (1, len(seeds)):
            raise ValueError(
                f"observed: {observed.shape[0]} observations for {len(seeds)} seeds; give 1 or {len(seeds)}"
            )
    elif observed.shape[0] != 1:
        raise ValueError(
            f"observed: {observed.shape[0]} observations for one fit; give (1, C, H, W), or one per "
            "seed with seeds=[...]"
        )
    return observed.detach().float(), settings, spec, stacked


def _check_scalars(seeds, window, patience, checkpoint_every, noise_sigma, holdout) -> list[int] | None:
    """Counts that are integers and levels that are numbers, each refused by its name otherwise (a 2.5 or a
    "100" would otherwise surface as a TypeError deep in the loop); the seeds as Python integers (NumPy's
    count as integers)."""
    for name, value in (("window", window), ("patience", patience), ("checkpoint_every", checkpoint_every)):
        if value is not None and not is_integer(value):
            raise ValueError(f"{name}: an integer, got {value!r}")
    for name, value in (("noise_sigma", noise_sigma), ("holdout", holdout)):
        if value is not None and not is_number(value):
            raise ValueError(f"{name}: a number, got {value!r}")
    if seeds is None:
        return None
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ValueError(f"seeds: a list of non-negative integers, got {seeds!r}")
    return [int(s) if is_integer(s) else s for s in seeds]


def _rule_names(stop: str | None, record: Sequence[str]) -> list[str]:
    if isinstance(record, str):
        record = [record]
    names = list(dict.fromkeys(([stop] if stop not in (None, "fixed") else []) + list(record)))
    for name in names + ([stop] if stop else []):
        if name not in RULES:
            raise ValueError(f"stop: unknown stopping rule {name!r}; choose one of {', '.join(RULES)}")
    return names


def _check_clean(clean, observed, operator, fits: int) -> torch.Tensor | None:
    if clean is None:
        return None
    h, w = (int(v) for v in operator.image_size(observed[:1]))
    want = (observed.shape[1], h, w)
    if (
        not isinstance(clean, torch.Tensor)
        or clean.dim() != 4
        or tuple(clean.shape[1:]) != want
        or clean.shape[0] not in (1, fits)
    ):
        shape = tuple(clean.shape) if isinstance(clean, torch.Tensor) else type(clean).__name__
        raise ValueError(f"clean: must be (1, {want[0]}, {h}, {w}), the image the operator observes, got {shape}")
    return clean.detach().float()


def _probe(operator: Operator, observed: torch.Tensor) -> None:
    """Run the operator once on two images of the fit's size, so that a broken operator is one line naming
    what is wrong before any network is built: the forward's shape (N, C, H', W') and gradient, and the
    loss's one value per fit."""
    name = type(operator).__name__
    h, w = (int(v) for v in operator.image_size(observed[:1]))
    x = torch.full((2, observed.shape[1], h, w), 0.5, device=observed.device, requires_grad=True)
    try:
        y = operator.forward(x)
    except Exception as err:  # noqa: BLE001 - the user's code: name it, in one line
        raise ValueError(
            f"operator: {name}.forward failed on a batch (2, {observed.shape[1]}, {h}, {w}) of the "
            f"image's size: {_first_line(err)}"
        ) from None
    want = (2, *observed.shape[1:])
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != want:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(
            f"operator: {name}.forward of (2, {observed.shape[1]}, {h}, {w}) returned {got}, not "
            f"{want} (one observation per image, the shape of observed); check image_size"
        )
    if not y.requires_grad:
        raise ValueError(
            f"operator: {name}.forward is not differentiable (its output carries no gradient): "
            "write it in torch operations, without .detach(), .numpy() or in-place writes to x"
        )
    try:
        loss = operator.loss(x, observed[:1].expand(2, *observed.shape[1:]))
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"operator: {name}.loss failed: {_first_line(err)}") from None
    if not isinstance(loss, torch.Tensor) or tuple(loss.shape) != (2,):
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(
            f"operator: {name}.loss returned shape {got} for 2 fits; it must return one value per "
            "fit, shape (N,) (e.g. .flatten(1).mean(1), not .mean())"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def describe_operator(operator: Operator) -> dict:
    """What a checkpoint records of an operator: its class and, per attribute, a tensor's content hash or a
    plain value's repr (other objects by type), so that a checkpoint of another operator is refused."""
    state = {"class": f"{type(operator).__module__}.{type(operator).__qualname__}"}
    for key, value in sorted(vars(operator).items()):
        if isinstance(value, torch.Tensor):
            state[key] = content_hash(value.real if value.is_complex() else value) + (
                content_hash(value.imag) if value.is_complex() else ""
            )
        elif isinstance(value, (bool, int, float, str, type(None), tuple, list)):
            state[key] = hashlib.sha256(repr(value).encode()).hexdigest()[:16] if len(repr(value)) > 64 else value
        elif isinstance(value, Operator):
            state[key] = describe_operator(value)
        else:
            state[key] = type(value).__name__
    return state


__all__ = ["restore", "describe_operator"]
