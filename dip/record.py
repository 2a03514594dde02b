"""One record of a fit: `FitRecord` is the schema of `summary.json`. This module alone writes it, reads it
and flattens it into a row of the pipeline's `runs.csv`; evaluation and the tables go through it.

`summary.json` is the record's fields as one JSON object, with two flattenings kept from the first format
(so that older result folders stay readable): the task's parameters (`Task.params()`, e.g. ``sigma``) sit
at the top level beside ``task``, and every score is a top-level ``psnr_*``/``ssim_*`` key. Optional
fields that do not apply (no ground truth, no noise level, no error) are left out of the file.

Example (a record read back is the record written)::

    >>> import tempfile, pathlib
    >>> r = FitRecord(task="denoise", task_params={"sigma": 25.0}, task_label="denoise-s25", arch="skip",
    ...               seed=0, observation_seed=0, iterations_budget=10)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "summary.json"
    >>> write(r, path)
    >>> read(path) == r
    True
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dip.strict_json import decode

SCORE_KINDS = ("final", "ema_final", "restored", "observed")  # images scored with PSNR and SSIM
"""The images a fit with a ground truth is scored on: the last iterate, the EMA's last image, the restored
image (the one written; the stopping rule's or the EMA's), and the observation itself (not for SR)."""


@dataclass
class StopRecord:
    """Where one stopping rule stood at the end of a fit.

    :param iteration: the iteration of the image the rule keeps (None: it kept none).
    :param minimum: the iteration of the rule's signal minimum (variance rules, holdout) or of the loss
        crossing the noise level (discrepancy); None if it never came.
    :param stop_at: the iteration at which the rule ends the fit (its decision), None if undecided.
    :param stopped: whether the fit ran to `stop_at`.
    :param target: the discrepancy rule's target (the expected data term at the noise level).
    :param psnr: PSNR (dB) of the kept image against the ground truth, when there is one.
    :param ssim: SSIM of the kept image, likewise.
    :param analysis_only: True for the oracle (the best iteration by ground truth): never a stopping rule.
    """

    iteration: int | None
    minimum: int | None = None
    stop_at: int | None = None
    stopped: bool = False
    target: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    analysis_only: bool = False

    def to_json(self) -> dict:
        if self.analysis_only:
            return {"iteration": self.iteration, "psnr": self.psnr, "analysis_only": True}
        out = asdict(self)
        del out["analysis_only"]
        return {k: v for k, v in out.items() if v is not None or k in ("iteration", "minimum", "stop_at")}

    @classmethod
    def from_json(cls, data: dict) -> StopRecord:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class FitRecord:
    """What one fit was, where it came from, how it ran and how it scored: `summary.json`.

    Scores are PSNR in dB and SSIM in [0, 1] of float images in [0, 1], under the task's convention
    (`dip.tasks.Task.convention`: SR on luminance with the border shaved). None where there is no ground
    truth, or (observed) for SR, whose observation is smaller than the image.
    """

    # What was fitted.
    task: str
    task_label: str
    arch: str
    seed: int
    observation_seed: int
    iterations_budget: int
    task_params: dict[str, Any] = field(default_factory=dict)
    preset: str = "paper"
    seed_scheme: str = ""
    stop_window: int = 100
    stop_patience: int | None = None
    holdout: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    # The data term ("default": the task's own; "sure": SURE, or PURE for Poisson noise, dip.risk), the
    # weight of a RED term (dip.red) and the
    # ensemble: how many fits of derived network seeds (dip.seeds.ensemble_seeds) the restored image
    # averages, and per member (by seed) its iterations, stopping and scores.
    loss: str = "default"
    red_weight: float = 0.0  # DeepRED's λ (dip.red); 0: no RED term
    ensemble: int = 1
    ensemble_members: dict[str, dict[str, Any]] | None = None
    psnr_members_mean: float | None = None
    # Provenance.
    device: str = ""
    batched_fits: int = 1  # the fits of the one network this fit was part of, itself included
    # Fitted stacked with other images (dip fit --stack, the pipeline's stack_images): every image of the
    # network (each one's --image or --observed, this one's included, in batch order); absent: fitted alone.
    stack: list[str] | None = None
    config_hash: str = ""
    git_commit: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    input_precision: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    # The discrepancy rule's noise level and target (present when that rule ran).
    noise_sigma: float | None = None
    noise_sigma_source: str | None = None
    noise_model: str | None = None
    discrepancy_target: float | None = None
    # memory_mode: "checkpointed" for a fit in memory-saving mode (activations recomputed in the backward
    # pass), "tiled" for one restored in tiles, left out for a plain fit.
    # A fit restored in tiles (dip.tiles; memory_mode "tiled"): the tile side and the
    # overlap in pixels, and per tile where it lies (top, left, height, width), the iteration and rule of
    # its returned image ("fixed": none decided), the iterations run and the seconds of its fit. Its
    # returned_by is "tiles" (restored.png is the tiles' blend) and its iterations and seconds the tiles' sum.
    memory_mode: str | None = None
    tile: int | None = None
    tile_overlap: int | None = None
    tiles: list[dict[str, Any]] | None = None
    # How it ran.
    status: str = "ok"
    error: str | None = None
    iterations: int | None = None
    seconds: float | None = None
    wall_seconds: float | None = None
    backtracks: int | None = None
    resumed_from: int | None = None
    stopped_by: str | None = None
    # The rule asked for (the task's default without --stop), and the one whose image restored.png is
    # ("fixed": the last EMA image, where that rule never decided) at which iteration.
    stop: str | None = None
    returned_by: str | None = None
    returned_iteration: int | None = None
    iterations_saved: int | None = None
    seconds_saved: float | None = None
    # Scores against the ground truth.
    psnr_final: float | None = None
    ssim_final: float | None = None
    psnr_ema_final: float | None = None
    ssim_ema_final: float | None = None
    psnr_restored: float | None = None
    ssim_restored: float | None = None
    psnr_observed: float | None = None
    ssim_observed: float | None = None
    psnr_best: float | None = None
    psnr_best_iteration: int | None = None
    psnr_ema_best: float | None = None
    stops: dict[str, StopRecord] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The record as `summary.json` holds it."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "task_params":
                out.update(value)
            elif f.name == "stops":
                out["stops"] = {name: stop.to_json() for name, stop in value.items()}
            elif value is not None or f.name in _ALWAYS:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict) -> FitRecord:
        """The record a `summary.json` object holds; unknown keys are the task's parameters."""
        from dip.tasks import Task

        names = {f.name for f in fields(cls)}
        params = {f.name for f in fields(Task)} - {"name"}
        values = {k: v for k, v in data.items() if k in names and k not in ("stops", "task_params")}
        values["task_params"] = {k: v for k, v in data.items() if k in params}
        values["stops"] = {name: StopRecord.from_json(stop) for name, stop in data.get("stops", {}).items()}
        return cls(**values)

    def set_scores(self, kind: str, scores: dict[str, float]) -> None:
        """Set the PSNR and SSIM of one of the SCORE_KINDS from {"psnr": ..., "ssim": ...}."""
        if kind not in SCORE_KINDS:
            raise ValueError(f"unknown score kind {kind!r}; one of {', '.join(SCORE_KINDS)}")
        setattr(self, f"psnr_{kind}", scores["psnr"])
        setattr(self, f"ssim_{kind}", scores["ssim"])


# Kept in summary.json even when None: a reader tells "not resumed" and "no rule stopped it" from them.
_ALWAYS = ("git_commit", "resumed_from", "stopped_by", "stop_patience")


def write(record: FitRecord, path: str | Path) -> None:
    """Write `record` to `path` (summary.json) atomically."""
    from dip.image_io import save_json

    save_json(record.to_json(), path)


def read(path: str | Path) -> FitRecord:
    """The record in `path`.

    :raises ValueError: one line naming the file, if it cannot be read or is not a fit's summary.json.
    """
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"{path}: cannot read it ({err.strerror or err})") from None
    try:
        return FitRecord.from_json(decode(json.loads(text)))  # json.loads: older files' bare Infinity too
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a dip fit summary ({err})") from None


def runs_row(
    record: FitRecord,
    image: str,
    task_label: str,
    history=None,
    restored=None,
    clean=None,
) -> dict[str, Any]:
    """One row of the pipeline's runs.csv: every scalar of the record, the settings (``setting_*``) and
    package versions (``version_*``), and per stopping rule its iteration, the share of the budget it saves
    (``*_saved``) and its minimum; with a ground truth also the restored PNG's scores and, per rule, its PSNR,
    SSIM and the gap to the oracle (``*_gap``, dB), on EMA images and on raw outputs (``*_raw``).

    :param image: the manifest's image name; `task_label`: the config's task key the tables group by (the
        fit's own label, e.g. ``denoise-s25-holdout0.05``, is kept as ``fit_label``).
    :param history: the fit's history (pandas DataFrame, history.csv).
    :param restored: the restored image as written (H×W×C float array in [0, 1]), scored as a user gets it.
    :param clean: the ground truth (H×W×C in [0, 1]), or None (a real flash/no-flash pair): no scores then.
    """
    flat = record.to_json()
    row: dict[str, Any] = {"image": image}
    row.update({k: v for k, v in flat.items() if not isinstance(v, (dict, list))})
    row["fit_label"], row["task_label"] = record.task_label, task_label
    row.update({f"setting_{k}": v for k, v in record.settings.items()})
    row.update({f"version_{k}": v for k, v in record.versions.items()})
    if record.status != "ok":
        return row
    budget = record.iterations_budget
    for name, stop in record.stops.items():
        row[f"{name}_iteration"] = stop.iteration
        if name not in ("oracle", "fixed"):
            stop_at = stop.stop_at if stop.stopped else budget
            row[f"{name}_saved"] = max(0, budget - stop_at) / budget
            if stop.minimum is not None:
                row[f"{name}_minimum"] = stop.minimum
    if clean is not None:
        row.update(_scored(record, history, restored, clean))
    return row


def _scored(record: FitRecord, history, restored, clean) -> dict[str, Any]:
    """The ground-truth columns of a runs.csv row (see runs_row)."""
    from dip.image_io import to_array, to_tensor
    from dip.tasks import Task

    task = Task.from_params(record.task, record.task_params)
    # SR: the ground truth centre-cropped to a multiple of the factor, as the fit restored it.
    clean = to_array(task.crop(to_tensor(clean)))
    row: dict[str, Any] = {f"{k}_restored_png": v for k, v in task.score(restored, clean).items()}
    if record.ensemble > 1:
        # An ensemble's image is not tracked per iteration (its history stacks the members'): each rule's
        # PSNR and SSIM are those of the members' images averaged; no oracle, so no gaps.
        for name, stop in record.stops.items():
            row[f"{name}_psnr"] = math.nan if stop.psnr is None else stop.psnr
            row[f"{name}_ssim"] = math.nan if stop.ssim is None else stop.ssim
        return row
    # The same rules judged on raw outputs (the ES-WMV paper's setting): raw PSNR at each rule's minimum.
    raw = history.set_index("iteration")["psnr"]
    row["oracle_psnr_raw"] = raw.max()
    oracle = record.stops["oracle"].psnr
    for name, stop in record.stops.items():
        judged = name not in ("oracle", "fixed")  # the ground-truth-free rules, judged against the oracle
        if judged and stop.minimum is not None:
            row[f"{name}_psnr_raw"] = raw.loc[stop.minimum]
            row[f"{name}_gap_raw"] = row["oracle_psnr_raw"] - row[f"{name}_psnr_raw"]
        row[f"{name}_psnr"] = math.nan if stop.psnr is None else stop.psnr
        row[f"{name}_ssim"] = math.nan if stop.ssim is None else stop.ssim
        if judged:
            row[f"{name}_gap"] = oracle - row[f"{name}_psnr"]
    return row


def printed_line(record: FitRecord, out: str | Path) -> dict:
    """What `dip fit` prints for one fit (a JSON object on one line): the scores against a ground truth where
    there is one (rounded to 0.001 dB), the rule whose image restored.png is and its iteration (a tiled
    fit: "tiles", no iteration, and the number of tiles), the folder.

    :param record: the fit's record.
    :param out: the fit's output folder.
    :returns: the line as a dict, for `dip.strict_json.dumps`.
    """
    scores = {k: getattr(record, k) for k in ("psnr_observed", "psnr_restored", "psnr_ema_best")}
    return {k: round(v, 3) for k, v in scores.items() if v is not None} | {
        "returned_by": record.returned_by,  # "tiles" for a tiled fit, whose line also counts its tiles
        "iteration": record.returned_iteration,
        **({"tiles": len(record.tiles)} if record.tiles else {}),
        "out": str(out),
    }
