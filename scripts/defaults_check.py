"""How each task's default stopping rule was chosen (docs/defaults.md): one fit per (task, image, size, seed)
that runs the whole budget and records every stopping rule (`dip fit --record-stops`), one more that holds 5 %
of the pixels out and stops at the holdout rule (`--stop holdout`: holding out changes the fit), and the
classical baselines of the same observation (`dip.pipeline.baselines`), on crops of scikit-image photographs
that no config uses at this scale. Then a table of medians per task and size.

    python scripts/defaults_check.py run  --out results/defaults [--only denoise-s25] [--sizes 64 128]
    python scripts/defaults_check.py table --out results/defaults   # docs/defaults.md's table (Markdown)
    python scripts/defaults_check.py budgets --out results/defaults # deblurring at 6000 against 3000 iterations

Fits run one at a time with one thread (`--threads 1`), in the order of CASES; a fit whose summary.json
exists is not run again, so the command resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# Crops at full resolution (left, top of a 128×128 window; the 64×64 image is the window's centre): the
# configs use these photographs only whole and downsampled to 64×64 (data/manifest.tsv), never at full
# resolution (checked against data/*.tsv).
IMAGES = {
    "coffee": ("skimage:coffee", 200, 120),
    "rocket": ("skimage:rocket", 260, 170),
    "ihc": ("skimage:immunohistochemistry", 200, 200),
    "astronaut": ("skimage:astronaut", 150, 40),
    "chelsea": ("skimage:chelsea", 160, 60),
    "camera": ("skimage:camera", 180, 60),
}

# key -> (dip task options, extra fit options), in the order they run (most important first).
CASES = {
    "denoise-s25": (["--task", "denoise", "--sigma", "25"], []),
    "denoise-s50": (["--task", "denoise", "--sigma", "50"], []),
    # The paper's two-run average, four networks fitted as one batched network (`--ensemble 4`).
    "denoise-s25-ensemble4": (["--task", "denoise", "--sigma", "25"], ["--ensemble", "4"]),
    # SURE as the data term (the network's input is the observation; no pixels can be held out): run "risk".
    "denoise-s25-sure": (["--task", "denoise", "--sigma", "25"], ["--loss", "sure"]),
    # Both: four networks, each fitted to SURE and stopped at its own risk crossing, averaged. Run "risk".
    "denoise-s25-sure-ensemble4": (["--task", "denoise", "--sigma", "25"], ["--loss", "sure", "--ensemble", "4"]),
    # The plain data term with SURE's input, the observation itself (is SURE's higher best iterate the input's?).
    "denoise-s25-input-image": (["--task", "denoise", "--sigma", "25"], ["--input", "image"]),
    # DeepRED: non-local means as a RED term tied to the network's output by ADMM, at DeepRED's λ (dip.red).
    "denoise-s25-red0.5": (["--task", "denoise", "--sigma", "25"], ["--red-weight", "0.5"]),
    "denoise-s25-red2": (["--task", "denoise", "--sigma", "25"], ["--red-weight", "2"]),
    "denoise-poisson10": (["--task", "denoise", "--noise", "poisson", "--peak", "10"], []),
    # PURE, SURE's Poisson counterpart (`--loss sure` on Poisson noise): run "risk", as SURE.
    "denoise-poisson10-pure": (["--task", "denoise", "--noise", "poisson", "--peak", "10"], ["--loss", "sure"]),
    # The preset's 1500 iterations were still improving: twice that, the rule deciding.
    "deblur-gaussian1.6": (["--task", "deblur", "--blur", "gaussian:1.6", "--sigma", "2"], ["--iters", "3000"]),
    # At 128×128 every fit of 3000 iterations was still improving at its end: twice that, the rule deciding.
    "deblur-gaussian1.6-6000": (["--task", "deblur", "--blur", "gaussian:1.6", "--sigma", "2"], ["--iters", "6000"]),
    # At 256×256 both fits of 6000 iterations were still improving at their end: twice that again.
    "deblur-gaussian1.6-12000": (["--task", "deblur", "--blur", "gaussian:1.6", "--sigma", "2"], ["--iters", "12000"]),
    # DeepRED on deblurring, the task its authors also ran it on, with the default budget up to 128×128.
    "deblur-gaussian1.6-6000-red0.5": (
        ["--task", "deblur", "--blur", "gaussian:1.6", "--sigma", "2"],
        ["--iters", "6000", "--red-weight", "0.5"],
    ),
    "sr-x4": (["--task", "sr", "--factor", "4"], []),
    "inpaint-drop0.5": (["--task", "inpaint", "--drop", "0.5"], []),
    # The paper's text-inpainting protocol (skip-text, 6000 iterations), its mask drawn at the crop's size.
    "inpaint-text": (["--task", "inpaint", "--text"], []),
    # The paper's large-hole protocol (hourglass-vase, 5000 iterations): a centred box of a quarter of each side.
    "inpaint-box": (["--task", "inpaint", "--box"], []),
    # The same box fitted by the default's network (dip.defaults), `skip`: with --kinds record, the default's fit.
    "inpaint-box-skip": (["--task", "inpaint", "--box"], ["--arch", "skip"]),
    "jpeg-q10": (["--task", "jpeg", "--quality", "10"], []),
}
# The fits of one (task, image, size, seed): "holdout" holds 5 % of the pixels out and stops at the holdout
# rule, recording every other rule up to there (their images, had they stopped by then; the oracle of that
# fit); "record" runs the whole budget without holding out and records every rule (the paper's fixed budget
# among them: what `dip fit --stop fixed` returns); "risk", for a SURE/PURE data term (which holds nothing
# out), stops at that data term's default, the risk rule, recording the others up to there.
KINDS = {
    "holdout": ["--stop", "holdout", "--record-stops"],
    "record": ["--stop", "fixed", "--record-stops"],
    "risk": ["--stop", "risk", "--record-stops"],
}
SIZES = {
    "denoise-s50": (),
    "denoise-s25": (64, 128, 256),
    "denoise-poisson10": (64, 128, 256),
    "deblur-gaussian1.6": (64, 128),
    "deblur-gaussian1.6-6000": (64, 128, 256),
    "deblur-gaussian1.6-12000": (256,),
    "jpeg-q10": (64, 128, 256),
    "denoise-s25-sure": (64, 128),
    "denoise-s25-red0.5": (64, 128),
    "denoise-s25-red2": (64, 128),
    "deblur-gaussian1.6-6000-red0.5": (64, 128),
    "sr-x4": (64, 128, 256),
    "inpaint-drop0.5": (64, 128),
    "inpaint-text": (64, 128),
    "inpaint-box": (64, 128),
    "inpaint-box-skip": (64, 128),
}


def image_file(out: Path, name: str, size: int) -> Path:
    from PIL import Image

    from dip.manifest import load_source, prepare

    path = out / "images" / f"{name}{size}.png"
    if not path.exists():
        source, left, top = IMAGES[name]
        photo = load_source(source)
        # Centred on the 128×128 window, moved inside the photograph where a larger window would leave it
        # (the 64×64 and 128×128 crops never move).
        height, width = photo.shape[:2]
        if size > min(height, width):
            raise SystemExit(f"{source} is {width}x{height}: no {size}x{size} crop")
        x = min(max(left + (128 - size) // 2, 0), width - size)
        y = min(max(top + (128 - size) // 2, 0), height - size)
        arr = prepare(photo, f"{x},{y},{size},{size}")
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.round(arr * 255).astype(np.uint8)
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
    return path


def _dip(args: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    print("dip", " ".join(args), flush=True)
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-m", "dip", *args], stdout=f, stderr=subprocess.STDOUT, check=False)


def _baselines(task_args: list[str], image: Path, folder: Path) -> None:
    """Every classical baseline of the fit's observation (the same seed, so the same observation)."""
    target = folder / "baselines.csv"
    if target.exists():
        return
    from dip.cli import parser
    from dip.image_io import Reading, read_array
    from dip.pipeline.baselines import baselines
    from dip.request import _task

    degraded = folder / "degraded"
    _dip(["degrade", *task_args, "--image", str(image), "--seed", "0", "--exact", "--out", str(degraded)],
         folder / "degrade.log")  # fmt: skip
    # The task as `dip degrade` reads these flags (the CLI's own parser and task builder).
    task = _task(parser().parse_args(["degrade", *task_args, "--image", str(image), "--out", str(degraded)]))
    mask = read_array(str(degraded / "mask.png")) if (degraded / "mask.png").exists() else None
    exact = degraded / ("observed.tif" if (degraded / "observed.tif").exists() else "observed.png")
    observed = read_array(str(exact), Reading(above_one=task.poisson))  # a Poisson observation exceeds 1
    _, table = baselines(task, observed, read_array(str(image)), mask, image.stem, "", 0)
    table.to_csv(target, index=False)


def run(
    out: Path, only: list[str] | None, sizes: list[int] | None, seeds: list[int], kinds: list[str], images: list[str]
) -> None:
    for key, (task_args, extra) in CASES.items():
        if only and key not in only:
            continue
        for size in SIZES.get(key, (64,)):
            if sizes and size not in sizes:
                continue
            for name in images or IMAGES:
                image = image_file(out, name, size)
                for seed in seeds:
                    folder = out / "fits" / key / f"{name}{size}" / f"seed{seed}"
                    common = [*task_args, "--image", str(image), "--seed", str(seed), "--observation-seed", "0",
                              "--threads", "1", "--no-progress", *extra]  # fmt: skip
                    _baselines(task_args, image, folder)
                    for kind in kinds:
                        if not (folder / kind / "summary.json").exists():
                            _dip(["fit", *common, *KINDS[kind], "--out", str(folder / kind)], folder / f"{kind}.log")


def manifest_baselines(out: Path, manifest: str, key: str) -> pd.DataFrame:
    """The classical baselines of a config's images as the pipeline makes their observations (observation
    seed 0, the 8-bit observed.png for Gaussian noise): the baselines of fits measured before, e.g. the
    holdout rule's 128×128 check on data/heldout128.tsv (README, "Knowing when to stop")."""
    from dip import manifest as manifest_io
    from dip.image_io import save_png, to_tensor

    rows = manifest_io.read(manifest)
    tables = []
    for image, row in rows.iterrows():
        folder = out / "manifest" / key / image
        clean = folder / "clean.png"
        if not clean.exists():
            folder.mkdir(parents=True, exist_ok=True)
            arr = manifest_io.prepare(manifest_io.load_source(row["path"]), row["crop"], row["resize"])
            save_png(to_tensor(arr), str(clean))
        _baselines(CASES[key][0], clean, folder)
        tables.append(pd.read_csv(folder / "baselines.csv").assign(image=image))
    return pd.concat(tables)


def _fit_columns(summary: Path, prefix: str) -> dict:
    """One fit's numbers: every rule's image PSNR, kept iteration and whether it had decided, the oracle (best
    EMA iterate of this fit), the iterations run and the returned image's PSNR."""
    record = json.loads(summary.read_text())
    if record.get("status") == "failed":  # `dip fit` exited with an error: no image, counted as a miss
        return {f"{prefix}ran": 0, f"{prefix}returned": float("nan"), f"{prefix}failed": record.get("error")}
    row = {f"{prefix}ran": record["iterations"], f"{prefix}returned": record.get("psnr_restored")}
    for rule, stop in record["stops"].items():
        row[f"{prefix}{rule}"] = stop.get("psnr")
        row[f"{prefix}{rule}_it"] = stop.get("iteration")
        row[f"{prefix}{rule}_decided"] = bool(stop.get("stopped")) or rule == "oracle"
    history = pd.read_csv(summary.parent / "history.csv").set_index("iteration")
    for at in (1500, 3000):  # the EMA image at a budget (deblurring's preset is 1500)
        if at in history.index and at <= record["iterations"]:
            row[f"{prefix}ema@{at}"] = history.loc[at, "psnr_ema"]
    row["observation"] = record.get("psnr_observed")
    row["budget"] = record["iterations_budget"]
    return row


def best_baseline(path: Path) -> tuple[float, str]:
    """The best classical baseline of a fit's `baselines.csv`: its PSNR and method (the observation itself
    only where no classical method ran)."""
    b = pd.read_csv(path)
    classical = b[~b.method.isin(["noisy", "blurred", "jpeg"])]
    # JPEG: the pipeline's one baseline is the observation itself.
    best = (b if classical.empty else classical).loc[(b if classical.empty else classical).psnr.idxmax()]
    return best.psnr, best.method


def _rows(out: Path) -> pd.DataFrame:
    rows = []
    for folder in sorted(out.glob("fits/*/*/seed*")):
        key, image, seed = folder.parent.parent.name, folder.parent.name, folder.name
        row = {"task": key, "image": image, "seed": seed, "size": int("".join(c for c in image if c.isdigit()))}
        for kind, prefix in (("holdout", ""), ("risk", ""), ("record", "full_")):  # one stopping fit per case
            if (folder / kind / "summary.json").exists():
                row.update(_fit_columns(folder / kind / "summary.json", prefix))
        if "ran" not in row and "full_ran" not in row:
            continue
        base = folder / "baselines.csv"
        if base.exists():
            row["baseline"], row["baseline_method"] = best_baseline(base)
        rows.append(row)
    return pd.DataFrame(rows)


def table(out: Path) -> str:
    """Per fit, then medians per task and size: the observation, the best classical baseline, the holdout
    rule's image (the returned image of `--stop holdout`), the other rules recorded on that fit (their
    image where they had decided by the holdout rule's stop, blank otherwise), its oracle, the iterations
    it ran."""
    df = _rows(out)
    if df.empty:
        return "no fits yet"
    rules = ["discrepancy", "es-wmv", "es-wmv-paper", "es-emv"]
    for rule in rules:
        if rule in df:
            df[rule] = df[rule].where(df[f"{rule}_decided"].fillna(False).astype(bool))
    cols = [c for c in ["observation", "baseline", "holdout", *rules, "oracle", "ema@1500", "ema@3000"] if c in df]
    shown = df[["task", "size", "image", "seed", "baseline_method", *cols, "holdout_it", "ran"]]
    lines = [shown.round(2).to_markdown(index=False), ""]
    medians = df.groupby(["task", "size"])[[*cols, "ran"]].median().round(2)
    medians["fits"] = df.groupby(["task", "size"]).size()
    medians["holdout - baseline (median)"] = (df["holdout"] - df["baseline"]).groupby([df.task, df["size"]]).median()
    lines.append(medians.round(2).reset_index().to_markdown(index=False))
    return "\n".join(lines)


def _default_image(row: pd.Series) -> float:
    """The PSNR of what the task's default command returns (dip.defaults): the holdout fit's image for
    denoising and deblurring (with SURE or PURE, which hold no pixels out, the risk rule's fit's), the fixed
    budget's last EMA image for the others."""
    if row["task"].startswith(("denoise", "deblur")):
        return row.get("returned")
    return row.get("full_returned")


def overview(out: Path) -> str:
    """One line per fit and medians per task: the observation, the best classical baseline, the default
    command's image, the holdout rule's and the fixed budget's where run, the best iterate (oracle)."""
    df = _rows(out)
    if df.empty:
        return "no fits yet"
    df["default"] = df.apply(_default_image, axis=1)
    df["oracle_any"] = df[[c for c in ("oracle", "full_oracle") if c in df]].max(axis=1)
    cols = [c for c in ["observation", "baseline", "default", "returned", "full_returned", "oracle_any"] if c in df]
    df["default - baseline"] = df["default"] - df["baseline"]
    shown = df[["task", "size", "image", "seed", "baseline_method", *cols, "default - baseline"]]
    lines = [shown.round(2).to_markdown(index=False), ""]
    medians = df.groupby(["task", "size"])[[*cols, "default - baseline"]].median()
    medians["fits"] = df.groupby(["task", "size"]).size()
    medians["ahead"] = (df["default - baseline"] >= -0.3).groupby([df.task, df["size"]]).sum()
    lines.append(medians.round(2).reset_index().to_markdown(index=False))
    return "\n".join(lines)


def holdout_at(history: pd.DataFrame, patience: int) -> tuple[int, int]:
    """What the holdout rule would have kept and where it would have stopped with `patience`, from a fit's
    recorded held-out error (`signal_holdout`): (iteration of the kept image, last iteration run). Exact up
    to the fit's own stop, so for any patience shorter than the one it ran with."""
    best, kept = np.inf, 0
    for it, value in zip(history["iteration"], history["signal_holdout"]):
        if kept and it - kept > patience:
            return kept, it - 1
        if value < best:
            best, kept = value, it
    return kept, int(history["iteration"].iloc[-1])


def patience(out: Path, fractions=(0.05, 0.1, 0.15, 0.2)) -> str:
    """The holdout rule at shorter patiences, replayed on the record of every holdout fit that ran with the
    longest of them (ensembles and the observation-as-input fits aside): per task, the dB lost against the
    fit's own image and the iterations saved against its own stop."""
    rows = []
    for summary in sorted(out.glob("fits/*/*/seed*/holdout/summary.json")):
        task = summary.parts[-5]
        record = json.loads(summary.read_text())
        if "ensemble" in task or "input-image" in task or record.get("status") == "failed":
            continue
        history = pd.read_csv(summary.parent / "history.csv")
        own = record["stops"]["holdout"]
        psnr = history.set_index("iteration")["psnr_ema"]
        waited = own["stop_at"] - own["minimum"]  # the fit's own patience
        replayed = holdout_at(history, waited)[0]
        if replayed != own["minimum"]:  # the replay must be the rule itself (dip.stopping.HoldoutStop)
            raise SystemExit(f"{summary}: the replay keeps iteration {replayed}, the fit kept {own['minimum']}")
        if own["stopped"] and waited < max(fractions) * record["iterations_budget"]:
            continue  # it ran with a shorter patience: past its stop nothing was recorded
        for fraction in fractions:
            kept, ran = holdout_at(history, int(round(fraction * record["iterations_budget"])))
            rows.append({"task": task, "fraction": fraction, "lost": own["psnr"] - psnr[kept],
                         "saved": 1 - ran / record["iterations"]})  # fmt: skip
    df = pd.DataFrame(rows)
    g = df.groupby(["task", "fraction"])
    made = g["lost"].agg(fits="size", lost_median="median", lost_max="max")
    made["lost > 0.05 dB"] = g["lost"].apply(lambda x: int((x > 0.05).sum()))
    made["iterations saved (median)"] = g["saved"].median()
    return (made.round(2) + 0.0).reset_index().to_markdown(index=False)  # + 0.0: no "-0"


def budgets(out: Path, key: str = "deblur-gaussian1.6-6000", shorter: int = 3000) -> str:
    """The default command at a shorter budget, replayed on the record of each holdout fit of `key` (a longer
    budget): the holdout rule with that budget's patience (a tenth) on the first `shorter` iterations, the
    budget's last EMA image where it has not decided by then. Exact: the fit's trajectory does not depend on
    its budget, only where it stops. Per size: medians of both budgets' images, of the best classical
    baseline, and how many fits are within 0.3 dB of it or ahead."""
    rows = []
    for summary in sorted(out.glob(f"fits/{key}/*/seed*/holdout/summary.json")):
        record = json.loads(summary.read_text())
        row = {"image": summary.parts[-4], "seed": summary.parts[-3], "long": float("nan")}
        row["size"] = int("".join(c for c in row["image"] if c.isdigit()))
        row["baseline"] = best_baseline(summary.parents[1] / "baselines.csv")[0]
        history = pd.read_csv(summary.parent / "history.csv")
        early = history[history.iteration <= shorter]
        kept, ran = holdout_at(early, shorter // 10)
        psnr = early.set_index("iteration")["psnr_ema"]
        if ran < len(early):  # the rule decided within the record (a longer patience records past that)
            row["short"] = psnr[kept]
        elif len(early) == shorter:  # undecided: the budget's last EMA image
            row["short"] = psnr[shorter]
        if record.get("status") != "failed":
            row["long"], row["long_iterations"] = record["psnr_restored"], record["iterations"]
        rows.append(row)
    df = pd.DataFrame(rows)
    print(df.round(2).to_markdown(index=False))
    g = df.assign(short_margin=df.short - df.baseline, long_margin=df.long - df.baseline).groupby("size")
    made = g[["baseline", "short", "long", "short_margin", "long_margin"]].median()
    made["fits"] = g.size()
    made[f"{shorter}: within 0.3 dB"] = g["short_margin"].apply(lambda x: int((x >= -0.3).sum()))
    made["longer: within 0.3 dB"] = g["long_margin"].apply(lambda x: int((x >= -0.3).sum()))
    made["failed"] = g["long"].apply(lambda x: int(x.isna().sum()))
    return (made.round(2) + 0.0).reset_index().to_markdown(index=False)


def paired(out: Path, keys: list[str]) -> str:
    """The fits of several cases on the same observations and network seeds, side by side: the best classical
    baseline, each case's returned image and best EMA iterate (with ground truth: a bound), and each later
    case's returned image less the first's, per fit (those that every case ran) and as medians per size."""
    df = _rows(out)
    df = df[df.task.isin(keys)]
    if df.empty:
        return "no fits yet"
    wide = df.pivot_table(index=["size", "image", "seed"], columns="task", values=["returned", "oracle"])
    base = df.groupby(["size", "image", "seed"])["baseline"].first()
    table = pd.DataFrame({"baseline": base})
    for key in keys:
        table[key] = wide["returned"][key]
        table[f"{key} best"] = wide["oracle"][key]
    for key in keys[1:]:
        table[f"{key} − {keys[0]}"] = table[key] - table[keys[0]]
    table = table.dropna(subset=keys).reset_index()  # the fits every case ran
    medians = table.drop(columns="image").groupby("size").median(numeric_only=True)
    medians["fits"] = table.groupby("size").size()
    return "\n".join(
        [table.round(2).to_markdown(index=False), "", (medians.round(2) + 0.0).reset_index().to_markdown(index=False)]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "table", "overview", "baselines", "patience", "budgets", "paired"))
    p.add_argument("--manifest", help="baselines: a config's manifest (data/*.tsv)")
    p.add_argument("--out", type=Path, default=Path("results/defaults"))
    p.add_argument("--only", nargs="+", choices=list(CASES))
    p.add_argument("--sizes", nargs="+", type=int)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--images", nargs="+", choices=list(IMAGES))
    p.add_argument("--kinds", nargs="+", choices=list(KINDS), default=["holdout"])
    a = p.parse_args(argv)
    if a.command == "run":
        run(a.out, a.only, a.sizes, a.seeds, a.kinds, a.images)
    elif a.command == "baselines":
        for key in a.only or ["denoise-s25"]:
            print(manifest_baselines(a.out, a.manifest, key).round(2).to_markdown(index=False))
    elif a.command == "overview":
        print(overview(a.out))
    elif a.command == "patience":
        print(patience(a.out))
    elif a.command == "budgets":
        print(budgets(a.out))
    elif a.command == "paired":  # --only: the cases, the first the one the others are compared with
        print(paired(a.out, a.only or ["denoise-s25", "denoise-s25-red0.5"]))
    else:
        print(table(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
