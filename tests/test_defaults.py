"""One default stopping rule per task (dip.defaults), shared by `dip fit`, `dip.restore` and the pipeline; the
paper's configs keep the paper's fixed budget; the default stops an over-fitting fit before its budget."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dip import defaults, restore
from dip import operators as ops
from dip.cli import main, parser
from dip.defaults import DEFAULTS, GENERIC, for_operator, for_task
from dip.fit import FitSettings, fit
from dip.image_io import save_png
from dip.metrics import psnr_torch
from dip.presets import ARCHITECTURES, PAPER
from dip.request import FitRequest, _resolve
from dip.seeds import generator
from dip.stopping import HOLDOUT, RULES, make_rule
from dip.tasks import TASKS, Task

ROOT = Path(__file__).resolve().parents[1]

# One command line per registry entry: the task options of `dip fit` (files added where a task needs one).
TASK_ARGS = {
    "denoise": ["--task", "denoise", "--sigma", "25"],
    "denoise-poisson": ["--task", "denoise", "--noise", "poisson", "--peak", "10"],
    "deblur": ["--task", "deblur", "--blur", "gaussian:1.6", "--sigma", "2"],
    "sr": ["--task", "sr", "--factor", "4"],
    "inpaint": ["--task", "inpaint", "--drop", "0.5"],
    "jpeg": ["--task", "jpeg", "--quality", "10"],
    "flash": ["--task", "flash"],
}
# The same tasks as dip.tasks.Task specs (flash aside: its operator needs the flash photograph).
TASK_SPECS = {
    "denoise": {"task": "denoise", "sigma": 25},
    "denoise-poisson": {"task": "denoise", "noise": "poisson", "peak": 10},
    "deblur": {"task": "deblur", "blur": "gaussian:1.6", "sigma": 2},
    "sr": {"task": "sr", "factor": 4},
    "inpaint": {"task": "inpaint", "mask": "drop", "drop": 0.5},
    "jpeg": {"task": "jpeg", "quality": 10},
}


@pytest.fixture
def png32(tmp_path):
    path = tmp_path / "clean.png"
    rng = np.random.default_rng(0)
    save_png(torch.from_numpy(rng.random((1, 3, 32, 32), dtype=np.float32)), str(path))
    return path


def test_the_registry_has_a_known_rule_for_every_task():
    assert set(DEFAULTS) == set(TASKS) | {"denoise-poisson"} == set(TASK_ARGS)
    for default in [*DEFAULTS.values(), GENERIC]:
        assert default.stop in RULES and default.why
        assert default.iterations is None or default.iterations > 0
        assert set(default.archs) <= set(PAPER) and set(default.archs.values()) <= set(ARCHITECTURES)


def _resolved(args: list[str], tmp_path: Path):
    request = FitRequest.from_namespace(parser().parse_args(["fit", *args, "--out", str(tmp_path / "out")]))
    return _resolve(request, log=lambda line: None)


@pytest.mark.parametrize("key", [k for k in TASK_ARGS if k != "flash"])
def test_dip_fit_without_stop_uses_the_registry_default(key, png32, tmp_path):
    """The CLI path (`dip fit` options → the request as resolved): the task's rule, its budget, and the
    holdout rule's pixels held out."""
    job = _resolved([*TASK_ARGS[key], "--image", str(png32)], tmp_path)
    default = DEFAULTS[key]
    assert defaults.key(job.task) == key
    assert job.request.stop == default.stop and default.stop in job.rule_names
    assert job.request.holdout == (HOLDOUT if default.stop == "holdout" else None)
    if default.iterations:
        assert job.settings.iterations == default.iterations
    assert not job.full_budget


def test_the_flash_task_keeps_its_fixed_budget(tmp_path, png32):
    job = _resolved(["--task", "flash", "--observed", str(png32), "--flash", str(png32)], tmp_path)
    assert job.request.stop == DEFAULTS["flash"].stop == "fixed" and job.request.holdout is None


def test_stop_fixed_is_the_papers_budget_and_record_stops_alone_runs_the_whole_budget(png32, tmp_path):
    fixed = _resolved([*TASK_ARGS["deblur"], "--image", str(png32), "--stop", "fixed"], tmp_path)
    assert fixed.request.stop == "fixed" and fixed.settings.iterations == PAPER["deblur"][1]["iterations"]
    assert not fixed.request.holdout
    recorded = _resolved([*TASK_ARGS["denoise"], "--image", str(png32), "--record-stops"], tmp_path)
    assert recorded.full_budget and recorded.request.stop == DEFAULTS["denoise"].stop
    explicit = _resolved([*TASK_ARGS["denoise"], "--image", str(png32), "--record-stops", "--stop", "es-wmv"], tmp_path)
    assert not explicit.full_budget and explicit.request.stop == "es-wmv"


def test_a_box_mask_is_fitted_by_the_defaults_network_and_the_papers_with_stop_fixed(png32, tmp_path):
    """The default's network replaces the preset's only without --stop and --arch: `--stop fixed` is the
    paper's protocol, its network included."""
    box = ["--task", "inpaint", "--box", "--image", str(png32)]
    default = DEFAULTS["inpaint"].archs["inpaint-box"]
    assert default != PAPER["inpaint-box"][0]
    assert _resolved(box, tmp_path).arch == default
    assert _resolved([*box, "--stop", "fixed"], tmp_path).arch == PAPER["inpaint-box"][0]
    assert _resolved([*box, "--arch", "hourglass"], tmp_path).arch == "hourglass"
    text = _resolved(["--task", "inpaint", "--text", "--image", str(png32)], tmp_path)
    assert text.arch == PAPER["inpaint-text"][0]  # the other masks keep the preset's network


def test_the_python_api_takes_the_same_default_for_a_tasks_operator():
    """dip.restore's default: the registry's entry of the operator's task, GENERIC for an operator of the
    user's."""
    mask = {"inpaint": torch.ones(1, 1, 8, 8)}
    task_operators = {key: Task.from_spec(spec).operator(mask.get(key)) for key, spec in TASK_SPECS.items()}
    for key, operator in task_operators.items():
        assert defaults.operator_key(operator) == key and for_operator(operator) == DEFAULTS[key]
    deblur_poisson = Task.from_spec({"task": "deblur", "blur": "gaussian:1.6", "noise": "poisson", "peak": 10})
    assert for_operator(deblur_poisson.operator()) == DEFAULTS["deblur"] == for_task(deblur_poisson)

    class Mine(ops.Operator):
        pass

    assert for_operator(Mine()) == GENERIC


class _Fitted(Exception):
    """Raised by a stand-in for dip.fit.fit: what restore would have fitted, without fitting it."""


@pytest.mark.parametrize(
    ("args", "stop"),
    [
        (TASK_ARGS["denoise"], None),
        (["--task", "denoise", "--sigma", "50"], None),
        (TASK_ARGS["denoise-poisson"], None),
        (TASK_ARGS["deblur"], None),
        (TASK_ARGS["deblur"], "fixed"),  # the paper's budget, as `dip fit --stop fixed`
        (["--task", "deblur", "--blur", "gaussian:1.6", "--noise", "poisson", "--peak", "10"], None),
        (TASK_ARGS["sr"], None),
        (["--task", "sr", "--factor", "8"], None),
        (TASK_ARGS["jpeg"], None),
    ],
)
def test_restore_fits_a_tasks_operator_with_the_network_and_settings_of_dip_fit(
    args, stop, png32, tmp_path, monkeypatch
):
    """One default per task: without arch and settings, dip.restore fits the package's task operator with the
    network, settings and budget that `dip fit` resolves for the same task (its paper preset, the default's
    budget where the default rule stops it)."""
    from dip import api
    from dip.presets import architecture

    job = _resolved([*args, "--image", str(png32), *(["--stop", stop] if stop else [])], tmp_path)

    def fitted(spec, operator, observed, settings, **options):
        raise _Fitted(spec, settings)

    monkeypatch.setattr(api, "fit", fitted)
    observed = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    operator = job.task.operator(None, job.psf)
    with pytest.raises(_Fitted) as caught:
        restore(observed, operator, stop=stop or "default", device="cpu")
    spec, settings = caught.value.args
    assert spec == architecture(job.arch)["net"]
    assert settings == job.settings


def test_deblurrings_budget_grows_with_the_image_in_dip_fit_and_restore(tmp_path, monkeypatch):
    """Above 128×128 the deblurring default's budget grows with the image's side, read from the file's header
    by `dip fit` and from the observation by dip.restore; --iters and `--stop fixed` keep theirs."""
    from dip import api

    default = DEFAULTS["deblur"]
    path = tmp_path / "wide.png"
    save_png(torch.rand(1, 3, 192, 384, generator=torch.Generator().manual_seed(4)), str(path))
    expected = default.budget(192, 384)
    assert expected > default.iterations == default.budget(128, 128) == default.budget(64, 64)
    assert expected == 25 * math.ceil(default.iterations * math.sqrt(192 * 384) / default.grows_above / 25)
    job = _resolved([*TASK_ARGS["deblur"], "--image", str(path)], tmp_path)
    assert job.settings.iterations == expected
    assert (
        _resolved([*TASK_ARGS["deblur"], "--image", str(path), "--iters", "700"], tmp_path).settings.iterations == 700
    )
    fixed = _resolved([*TASK_ARGS["deblur"], "--image", str(path), "--stop", "fixed"], tmp_path)
    assert fixed.settings.iterations == PAPER["deblur"][1]["iterations"]

    def fitted(spec, operator, observed, settings, **options):
        raise _Fitted(settings)

    monkeypatch.setattr(api, "fit", fitted)
    observed = torch.rand(1, 3, 192, 384, generator=torch.Generator().manual_seed(5))
    with pytest.raises(_Fitted) as caught:
        restore(observed, job.task.operator(None, job.psf), device="cpu")
    assert caught.value.args[0] == job.settings


def test_restore_keeps_the_generic_settings_where_no_preset_applies():
    """Inpaint's mask does not say its kind (which picks the preset) and a user's operator has none: the
    skip network and FitSettings()."""
    from dip.api import _task_preset

    observed = torch.rand(1, 3, 8, 8)
    assert _task_preset(ops.Inpaint(torch.ones(1, 1, 8, 8)), None, "default", "default", observed) == ("skip", {})
    assert _task_preset(ops.Operator(), None, "default", "default", observed) == ("skip", {})
    assert _task_preset(ops.Blur(ops.gaussian_psf(1.6)), "skip-3", "default", "default", observed)[0] == "skip-3"


def test_restore_without_stop_fits_with_the_default_rule():
    clean = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    operator = ops.Denoise(25)
    observed = operator.observe(clean, generator(0, "observation"))
    result = restore(observed, operator, arch="skip-3", settings={"iterations": 3}, device="cpu")
    assert set(result.stops) == {DEFAULTS["denoise"].stop}


def test_restore_refuses_to_hold_out_an_operator_whose_loss_is_not_per_entry():
    class WholeLoss(ops.Operator):
        def loss(self, output, observed):
            return (output - observed).abs().flatten(1).mean(1)

    observed = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match=r"^holdout: WholeLoss overrides loss but not pointwise_loss"):
        restore(observed, WholeLoss(), arch="skip-3", settings={"iterations": 3}, stop="holdout", device="cpu")
    result = restore(observed, WholeLoss(), arch="skip-3", settings={"iterations": 3}, device="cpu")
    assert set(result.stops) == {GENERIC.stop}  # an operator of the user's: the generic default


def test_holding_pixels_out_keeps_the_operators_own_data_term():
    """The holdout rule's fit of a Poisson observation minimises the Poisson deviance over the kept pixels,
    not a squared error."""
    y = torch.poisson(torch.full((1, 1, 16, 16), 5.0), generator=generator(0, "observation")) / 10
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    poisson = ops.Poisson(10)
    held = ops.HeldOut(poisson, y, 0.25, generator(0, "holdout"))
    kept = 1 - held.held
    expected = (ops.poisson_deviance(10 * x, 10 * y) * kept).sum() / kept.sum()
    assert torch.allclose(held.loss(x, y), expected.reshape(1))
    assert not torch.allclose(held.loss(x, y), ops.HeldOut(ops.Operator(), y, 0.25, generator(0, "holdout")).loss(x, y))


def test_the_paper_configs_run_the_papers_fixed_budget():
    configs = sorted((ROOT / "config").glob("paper*.yaml"))
    assert configs
    for path in configs:
        assert yaml.safe_load(path.read_text())["stopping"].get("stop") == "fixed", path.name


def test_the_pipeline_passes_no_stop_for_the_default_and_the_configs_rule_otherwise(tmp_path):
    """A dry run's fit commands: with `stop: default` no --stop (the CLI then takes the registry's rule and,
    with --record-stops, runs the whole budget), with `stop: fixed` the paper's protocol."""
    from tests.test_workflow import scratch, snakemake

    workdir = scratch(tmp_path)
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    commands = {}
    for stop in ("default", "fixed"):
        config["stopping"]["stop"] = stop
        path = workdir / "config" / f"{stop}.yaml"
        path.write_text(yaml.safe_dump(config))
        r = snakemake("-n", "-p", "--directory", workdir, "--configfile", path)
        assert r.returncode == 0, r.stderr
        commands[stop] = re.findall(r"^(?:Shell command: )?\s*(dip fit .*)$", r.stdout, flags=re.M)
        assert commands[stop] and all("--record-stops" in c for c in commands[stop])
    assert not any("--stop" in c.replace("--record-stops", "") for c in commands["default"])
    assert all(re.search(r"--stop fixed\b", c) for c in commands["fixed"])


@pytest.fixture
def one_thread():
    """One thread for a fit of a few hundred iterations: two threads on a loaded CPU wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_default_stops_an_over_fitting_fit_before_its_budget_with_a_better_image(one_thread):
    """A small noisy image and a long budget: the fit over-fits the noise. Run the whole budget recording
    the default rule (RunOptions.full_budget, as the pipeline's fits do): the rule would have stopped
    before the budget, and the image it returns scores above the budget's last EMA image."""
    budget = 400
    ramp = torch.linspace(0, 1, 32)
    clean = (0.25 + 0.5 * ramp[None, :] * ramp[:, None]).reshape(1, 1, 32, 32)  # smooth: the noise is what over-fits
    operator = ops.Denoise(50)
    observed = operator.observe(clean, generator(0, "observation"))
    rule_name = for_operator(operator).stop
    heldout = ops.HeldOut(operator, observed, HOLDOUT, generator(0, "holdout")) if rule_name == "holdout" else None
    settings = FitSettings(iterations=budget, seed=0)
    rule = make_rule(rule_name, budget, ema=settings.ema, heldout=(heldout, observed) if heldout else None)
    result = fit(
        {"kind": "skip", "channels_down": [16] * 3, "channels_up": [16] * 3, "channels_skip": [4] * 3},
        heldout or operator,
        observed,
        settings,
        clean=clean,
        rules=[rule],
        stop_on=rule_name,
        full_budget=True,
    )
    assert result.iterations == budget and result.returned_by == rule_name
    assert result.stops[rule_name]["stop_at"] < budget
    assert result.returned_iteration == result.stops[rule_name]["iteration"] < budget
    returned, last = float(psnr_torch(result.image, clean)), float(psnr_torch(result.ema, clean))
    assert math.isfinite(returned) and returned > last


def test_dip_fit_prints_and_records_the_rule_that_chose_the_image(png32, tmp_path, capsys):
    out = tmp_path / "fit"
    args = ["--image", str(png32), "--arch", "skip-3", "--iters", "30", "--threads", "1", "--no-progress"]
    code = main(["fit", *TASK_ARGS["denoise"], *args, "--out", str(out)])
    assert code == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop"] == DEFAULTS["denoise"].stop
    assert line["returned_by"] == summary["returned_by"] in (DEFAULTS["denoise"].stop, "fixed")
    assert line["iteration"] == summary["returned_iteration"] <= 30


def test_the_defaults_page_lists_the_registry():
    """docs/defaults.md's table of defaults is the registry's: a default changed in one place only fails here."""
    text = (ROOT / "docs" / "defaults.md").read_text()
    listed = dict(re.findall(r"^\| `([a-z-]+)` \| `([a-z-]+)` \|", text, flags=re.M))
    assert listed == {key: default.stop for key, default in DEFAULTS.items()}


def test_the_config_schema_offers_the_default_and_every_rule():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    stop = schema["properties"]["stopping"]["properties"]["stop"]
    assert stop["enum"] == ["default", *RULES] and stop["default"] == "default"


def test_a_risk_estimate_data_term_changes_the_rule_and_keeps_the_tasks_budget():
    """With `loss="sure"` the rule and its reason are RISK's; the task's budget (and its growth with the
    image's size) and networks stay the task's, the plain data term's default is the registry's entry."""
    for key, spec in TASK_SPECS.items():
        task, entry = Task.from_spec(spec), DEFAULTS[key]
        assert for_task(task) == entry
        risk = for_task(task, "sure")
        assert (risk.stop, risk.why) == (defaults.RISK.stop, defaults.RISK.why) != (entry.stop, entry.why)
        assert (risk.iterations, risk.grows_above, risk.archs) == (entry.iterations, entry.grows_above, entry.archs)
        assert risk.budget(512, 512) == entry.budget(512, 512)
