"""Each task's default stopping rule (and, for a box mask, network), in one place: what `dip fit` uses
without `--stop`, what `dip.restore` uses for a task's operator without `stop`, and what a pipeline config's
`stopping: {stop: default}` fits return. Chosen by measurement on images that no config uses
(docs/defaults.md: the numbers, the command, the machine); `--stop fixed` (a config's `stop: fixed`) is the
paper's protocol: the whole budget, the last EMA image.

Why a rule at all: the paper's budgets were tuned for 512×512 images on a GPU; on smaller images the fit
peaks far earlier and then fits the noise, so the budget's last image is the over-fitted one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dip.operators import Operator
    from dip.tasks import Task


@dataclass(frozen=True)
class Default:
    """One task's default. stop: a rule of `dip.stopping.RULES`; iterations: the budget when the rule
    decides (None: the task's paper preset's, `dip.presets.PAPER`), never used with `--stop fixed`, which
    keeps the paper's; grows_above: a side in pixels above which the budget grows in proportion to the
    image's side √(H·W) (None: the same budget at every size); why: one line, what the measurement said
    (docs/defaults.md has the table); archs: paper preset key -> the architecture (`dip.presets.ARCHITECTURES`)
    the default fits in place of the preset's, where one measured better (the preset's settings kept)."""

    stop: str
    iterations: int | None = None
    why: str = ""
    grows_above: int | None = None
    archs: Mapping[str, str] = field(default_factory=dict)

    def budget(self, height: int, width: int) -> int | None:
        """The budget for an image of height × width pixels: `iterations`, times √(H·W)/`grows_above` (to
        the next multiple of 25) where the image's side is larger. None: the paper preset's.

        >>> Default("holdout", 6000, grows_above=128).budget(256, 256), Default("holdout", 6000).budget(256, 256)
        (12000, 6000)
        """
        side = math.sqrt(height * width)
        if self.iterations is None or self.grows_above is None or side <= self.grows_above:
            return self.iterations
        return 25 * math.ceil(self.iterations * side / self.grows_above / 25)


# task key (`key`) -> its default. The holdout rule holds 5 % of the observed pixels out of the loss
# (dip.stopping.HOLDOUT) and keeps the image that predicts them best.
DEFAULTS: dict[str, Default] = {
    "denoise": Default(
        "holdout",
        why="the best rule on every fit measured, 0.04-0.23 dB from its fit's best iterate; the budget over-fits",
    ),
    "denoise-poisson": Default(
        "holdout", why="within 0.05 dB of the best iterate, far above the observation; the budget's image is not"
    ),
    "deblur": Default(
        "holdout",
        iterations=6000,
        grows_above=128,
        why="at 128x128 the fits still improved at 3000 iterations: 6000 was ahead of 3000 on every fit there, "
        "level at 64x64, where the rule stops most fits sooner; at 256x256 12000 was ahead of 6000 on all 6 fits",
    ),
    # SR, inpainting and JPEG: the paper's budget measured against the classical baseline and the other rules.
    "sr": Default(
        "fixed",
        why="ahead of bicubic on 6 held-out 64x64 crops, 2 seeds, and 4 at 128x128 (median +0.59 dB both), "
        "within 0.06 dB of the best iterate",
    ),
    # Inpainting's text and box masks were measured at 64x64 (the text mask also on one 128x128 crop, the box
    # on six), file masks not at all: the paper's protocol stays for them, but for the box's network.
    "inpaint": Default(
        "fixed",
        why="scattered pixels: ahead of biharmonic on 6 held-out 64x64 crops (median +0.51 dB); text: ahead on "
        "the median of 6 (+0.40 dB); a centred box, fitted by skip: ahead of hourglass-vase on 11 fits of 12 "
        "(median +2.2 dB), of biharmonic on the median (+1.43 dB) and on 5 crops of 6 at 128x128; file masks "
        "not measured",
        archs={"inpaint-box": "skip"},
    ),
    "jpeg": Default(
        "fixed",
        why="0.21 dB behind classical artefact removal on 6 held-out crops (median, 64x64 and 128x128), the best "
        "iterate as far; the holdout rule within 0.1 dB",
    ),
    # The flash/no-flash fit returns its last output (no EMA) after the notebook's 600 iterations at lr 0.1.
    "flash": Default("fixed", why="not measured: the paper's protocol for its spiking fit"),
}

# An operator of the user's (`dip.restore`): no task to look up, and nothing measured. The guarded ES-WMV rule
# needs nothing of the operator (its loss need not be per entry, its observation need not be an image whose
# entries can be held out at random, as a masked Fourier one's zeros cannot).
GENERIC = Default(
    "es-wmv",
    why="needs nothing of the operator or the noise; the holdout rule, where it applies, was better on denoising",
)


def key(task: Task) -> str:
    """The DEFAULTS key of a task (dip.tasks.Task): its name, with Poisson denoising apart."""
    return "denoise-poisson" if task.name == "denoise" and task.poisson else task.name


# A SURE/PURE data term (`loss="sure"`) cannot hold pixels out (they would still be the network's input): its
# fits stop where the risk estimate itself falls to 0 (dip.stopping.RiskStop).
RISK = Default(
    "risk",
    why="0.01-0.74 dB (SURE) and 0.03-0.47 dB (PURE) from the fit's best iterate on 6 held-out 64x64 crops; "
    "ES-WMV returned 27.79 dB (SURE) and 21.01 dB (PURE) on the 3 it ran on, the risk rule 29.39 and 23.90",
)


def _with_loss(default: Default, loss: str) -> Default:
    """The default with data term `loss`: `RISK`'s rule and reason for a SURE/PURE loss (`loss="sure"`), the
    task's budget and networks kept."""
    if loss == "sure":
        return replace(default, stop=RISK.stop, why=RISK.why)
    return default


def for_task(task: Task, loss: str = "default") -> Default:
    """The default of a task (dip.tasks.Task) fitted with data term `loss` ("default" or "sure")."""
    return _with_loss(DEFAULTS[key(task)], loss)


def operator_key(operator: Operator) -> str | None:
    """The DEFAULTS key of one of the package's task operators (dip.operators), None for another one."""
    from dip import operators as ops

    if isinstance(operator, ops.HeldOut):
        operator = operator.operator
    if isinstance(operator, ops.Poisson):
        return "deblur" if isinstance(operator.operator, ops.Blur) else "denoise-poisson"
    kinds = {
        ops.Denoise: "denoise",
        ops.Blur: "deblur",
        ops.SuperResolve: "sr",
        ops.Inpaint: "inpaint",
        ops.JpegArtifacts: "jpeg",
    }
    return next((name for kind, name in kinds.items() if isinstance(operator, kind)), None)


def operator_preset(operator: Operator) -> str | None:
    """The paper preset (a key of `dip.presets.PAPER`) that `dip fit` fits the task of one of the package's
    task operators with: the same network and settings in `dip.restore`. None for an operator of the user's,
    and for `Inpaint`, whose mask tensor does not say the mask's kind (scattered pixels, text, a box), which
    picks the preset.

    >>> from dip import operators as ops
    >>> operator_preset(ops.Denoise(50)), operator_preset(ops.SuperResolve(3)), operator_preset(ops.Poisson(10))
    ('denoise-sigma50', 'sr-x4', 'denoise')
    """
    from dip import operators as ops
    from dip.presets import preset_key
    from dip.tasks import Task

    name = operator_key(operator)
    if name is None or name == "inpaint":
        return None
    inner = operator.operator if isinstance(operator, ops.HeldOut) else operator
    if isinstance(inner, ops.Denoise):
        return preset_key(Task("denoise", sigma=inner.sigma))
    if isinstance(inner, ops.SuperResolve):
        return preset_key(Task("sr", factor=inner.factor))
    return {"denoise-poisson": "denoise"}.get(name, name)


def for_operator(operator: Operator, loss: str = "default") -> Default:
    """The default of `dip.restore` for `operator` and data term `loss`: its task's for the package's task
    operators, GENERIC for any other."""
    name = operator_key(operator)
    return GENERIC if name is None else _with_loss(DEFAULTS[name], loss)
