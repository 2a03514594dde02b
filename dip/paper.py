"""The paper's numbers beside ours: the published table (`data/published`) and the paper-vs-ours table.

The published table has one row per (task, dataset, image, method, kind). `kind` is `published` for a cell
the paper prints and `derived` for a number computed from the authors' own result images; the two are
never merged into one column. `image` is our manifest id (the source's own name in `image_in_source`),
empty for a dataset mean as printed. `role` says what a row is to the comparison: `dip` (the paper's DIP,
compared with our fits), `dip-variant` (another DIP run the paper reports), `baseline` (another method;
the strongest per task, dataset and kind is shown) or `observation` (the degraded input, never a
baseline). `convention` is how the row is scored, in the words of `convention_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dip.image_io import InputError

KINDS = ("published", "derived")
ROLES = ("dip", "dip-variant", "baseline", "observation")
REQUIRED = ("task", "dataset", "image", "method", "role", "psnr", "convention", "kind", "source")
KEY = ["task", "dataset", "image", "method", "kind"]
MEAN = "(mean)"
# A derived dataset mean and the printed one agree to this (the 8-bit rounding of the authors' result
# images); a pair that differs by more is a different run and is said so under the table.
MEAN_TOLERANCE_DB = 0.05
# Per image the derived and printed cells agree less closely (the restoration table: 0.16 dB on House).
IMAGE_TOLERANCE_DB = 0.16


def check_published(frame: pd.DataFrame, name: str = "published table") -> pd.DataFrame:
    """Validate a published table (columns as in `data/published/README.md`) and normalise it: `image` ""
    for a dataset mean, `psnr` float. Raises InputError naming the first problem (`name`: row N: ...)."""
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise InputError(f"{name}: no column {missing[0]!r} (needs {', '.join(REQUIRED)})")
    frame = frame.copy()
    text = [c for c in frame if c != "psnr"]
    frame[text] = frame[text].fillna("").astype(str)
    frame["psnr"] = pd.to_numeric(frame["psnr"], errors="coerce")
    line = lambda i: i + 2  # noqa: E731 -- the file's line: header first, counted from 1
    for column, allowed in (("kind", KINDS), ("role", ROLES)):
        bad = frame.index[~frame[column].isin(allowed)]
        if len(bad):
            raise InputError(
                f"{name}: row {line(bad[0])}: {column} {frame.at[bad[0], column]!r} is not one of {', '.join(allowed)}"
            )
    for column in ("task", "dataset", "method", "source", "convention"):
        bad = frame.index[frame[column].str.strip() == ""]
        if len(bad):
            raise InputError(f"{name}: row {line(bad[0])}: empty {column}")
    bad = frame.index[frame["psnr"].isna()]
    if len(bad):
        raise InputError(f"{name}: row {line(bad[0])}: psnr is not a number")
    duplicated = frame.index[frame.duplicated(KEY)]
    if len(duplicated):
        key = ", ".join(f"{frame.at[duplicated[0], c] or '-'}" for c in KEY)
        raise InputError(f"{name}: row {line(duplicated[0])}: ({key}) appears twice")
    dips = frame[frame["role"] == "dip"].groupby(["task", "dataset", "image", "kind"]).size()
    if (dips > 1).any():
        task, dataset, image, kind = dips.index[dips > 1][0]
        raise InputError(f"{name}: {task}, {dataset}, {image or MEAN}, {kind}: more than one row of role dip")
    conventions = frame.groupby(["task", "dataset"])["convention"].nunique()
    if (conventions > 1).any():
        task, dataset = conventions.index[conventions > 1][0]
        raise InputError(f"{name}: {task}, {dataset}: rows scored by more than one convention")
    return frame


def read_published(path: str | Path) -> pd.DataFrame:
    """The published table at `path`, validated (`check_published`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: published table not found")
    return check_published(pd.read_csv(path, dtype=str, keep_default_na=False), str(path))


def dataset_means(published: pd.DataFrame) -> pd.DataFrame:
    """Per (task, dataset, kind, method): the printed dataset mean where the table has one, else the mean of
    the method's per-image rows of that kind. Columns: task, dataset, kind, method, role, psnr, images (how
    many per-image rows the mean is over; 0 for a printed mean)."""
    keys = ["task", "dataset", "kind", "method"]
    printed = published[published["image"] == ""].assign(images=0)[[*keys, "role", "psnr", "images"]]
    cells = published[published["image"] != ""]
    computed = (
        cells.groupby(keys, sort=False)
        .agg(role=("role", "first"), psnr=("psnr", "mean"), images=("image", "nunique"))
        .reset_index()
    )
    computed = computed.merge(printed[keys], on=keys, how="left", indicator=True)
    computed = computed[computed["_merge"] == "left_only"].drop(columns="_merge")
    return pd.concat([printed, computed], ignore_index=True)


def agreement(published: pd.DataFrame) -> pd.DataFrame:
    """Where a method has both a published and a derived dataset mean: task, dataset, method, role,
    published, derived, difference (derived − published, dB), images (of the derived mean)."""
    means = dataset_means(published)
    pub = means[means["kind"] == "published"].drop(columns=["kind", "images"])
    der = means[means["kind"] == "derived"].drop(columns=["kind", "role"])
    both = pub.merge(der, on=["task", "dataset", "method"], suffixes=("_published", "_derived"))
    both = both.rename(columns={"psnr_published": "published", "psnr_derived": "derived"})
    return both.assign(difference=both["derived"] - both["published"])


def strongest_baselines(published: pd.DataFrame) -> pd.DataFrame:
    """The best non-DIP method per (task, dataset, kind), by its dataset mean: task, dataset, kind, method,
    psnr (its mean)."""
    means = dataset_means(published)
    base = means[means["role"] == "baseline"]
    best = base.loc[base.groupby(["task", "dataset", "kind"])["psnr"].idxmax()]
    return best[["task", "dataset", "kind", "method", "psnr"]].reset_index(drop=True)


def convention_of(task: str, factor: float | None, channels: int) -> str:
    """How we score a fit (dip.tasks), in the published table's words."""
    if task == "sr":
        return f"Y, shave {int(factor)}"
    return "RGB" if channels == 3 else "grey"


def _ours(runs: pd.DataFrame, dataset_of: Mapping[str, str], channels: Mapping[str, int]) -> pd.DataFrame:
    """Our fits per image and per dataset mean: mean and spread (std over seeds, ddof 0) of restored.png's and
    the oracle's PSNR."""
    ok = runs[runs["status"] == "ok"].reindex(
        columns=[*runs.columns, *(c for c in ("psnr_restored_png", "oracle_psnr", "factor") if c not in runs)]
    )
    ok = ok.assign(
        dataset=ok["image"].map(dataset_of).fillna("").replace("", "-"),
        ours_convention=[convention_of(t, f, channels[i]) for t, f, i in zip(ok["task"], ok["factor"], ok["image"])],
    )
    std = lambda v: v.std(ddof=0) if v.notna().sum() > 1 else float("nan")  # noqa: E731 -- one seed: no spread
    keys = ["task_label", "dataset", "image", "arch"]
    per_image = (
        ok.groupby(keys)
        .agg(
            ours_restored=("psnr_restored_png", "mean"),
            ours_restored_std=("psnr_restored_png", std),
            ours_oracle=("oracle_psnr", "mean"),
            ours_oracle_std=("oracle_psnr", std),
            seeds=("seed", "nunique"),
            ours_convention=("ours_convention", "first"),
        )
        .reset_index()
        .assign(images=1)
    )
    # A dataset mean averages the images' seed means, as the paper averages images; its spread is over the
    # seeds that fitted every image of the mean (each such seed's mean over images).
    group = ["task_label", "dataset", "arch"]
    means = (
        per_image.groupby(group)
        .agg(
            ours_restored=("ours_restored", "mean"),
            ours_oracle=("ours_oracle", "mean"),
            seeds=("seeds", "min"),
            images=("image", "nunique"),
            # A mean over images scored differently (RGB and grey) says so: never silently mixed.
            ours_convention=("ours_convention", lambda c: " + ".join(sorted(set(c)))),
        )
        .reset_index()
    )
    per_seed = (
        ok.groupby([*group, "seed"])
        .agg(restored=("psnr_restored_png", "mean"), oracle=("oracle_psnr", "mean"), n=("image", "nunique"))
        .reset_index()
    )
    per_seed = per_seed.merge(means[[*group, "images"]], on=group)
    spread = (
        per_seed[per_seed["n"] == per_seed["images"]]
        .groupby(group)
        .agg(ours_restored_std=("restored", std), ours_oracle_std=("oracle", std))
        .reset_index()
    )
    means = means.merge(spread, on=group, how="left").assign(image=MEAN)
    return pd.concat([per_image, means], ignore_index=True).rename(columns={"task_label": "task"})


# Baselines our pipeline runs that the paper reports too: our method name (workflow/scripts/baselines.py)
# -> the published table's. CBM3D comes from the optional bm3d extra (dip.cbm3d).
SHARED_BASELINES = {"cbm3d": "CBM3D"}


def _our_baselines(baselines: pd.DataFrame | None, dataset_of: Mapping[str, str]) -> pd.DataFrame:
    """Per (task, dataset, image or MEAN): ours_{method} for each of SHARED_BASELINES we ran, the mean
    over observation seeds (a dataset mean: over the images we ran it on)."""
    keys = ["task", "dataset", "image"]
    columns = [f"ours_{m}" for m in SHARED_BASELINES]
    rows = None if baselines is None else baselines[baselines["method"].isin(list(SHARED_BASELINES))]
    if rows is None or not len(rows):
        return pd.DataFrame({c: pd.Series(dtype=str if c in keys else float) for c in [*keys, *columns]})
    # metrics.csv's `task` is the task's kind (denoise); the table's is the label (denoise-s25).
    rows = rows.drop(columns="task", errors="ignore").rename(columns={"task_label": "task"})
    rows = rows.assign(dataset=rows["image"].map(dataset_of).fillna("").replace("", "-"))
    per_image = rows.groupby([*keys, "method"])["psnr"].mean().reset_index()
    means = per_image.groupby(["task", "dataset", "method"])["psnr"].mean().reset_index().assign(image=MEAN)
    both = pd.concat([per_image, means], ignore_index=True)
    wide = both.pivot_table(index=keys, columns="method", values="psnr").reset_index()
    wide = wide.rename(columns={m: f"ours_{m}" for m in SHARED_BASELINES})
    return wide.reindex(columns=[*keys, *columns])


def _paper_cells(published: pd.DataFrame) -> pd.DataFrame:
    """Per (task, dataset, image or MEAN): the paper's DIP and strongest baseline of each kind, with the
    baseline's name, the paper's convention and how many images its dataset has."""
    keys = ["task", "dataset", "image"]
    cells = published[published["image"] != ""][[*keys, "kind", "method", "role", "psnr"]]
    means = dataset_means(published).assign(image=MEAN)[[*keys, "kind", "method", "role", "psnr"]]
    rows = pd.concat([cells, means], ignore_index=True)
    frame = rows[keys].drop_duplicates()
    for kind in KINDS:
        dip = rows[(rows["role"] == "dip") & (rows["kind"] == kind)]
        frame = frame.merge(dip[[*keys, "psnr"]].rename(columns={"psnr": f"paper_dip_{kind}"}), on=keys, how="left")
        best = strongest_baselines(published)
        best = best[best["kind"] == kind][["task", "dataset", "method"]]
        base = rows[rows["kind"] == kind].merge(best, on=["task", "dataset", "method"])
        frame = frame.merge(
            base[[*keys, "psnr", "method"]].rename(
                columns={"psnr": f"baseline_{kind}", "method": f"baseline_{kind}_method"}
            ),
            on=keys,
            how="left",
        )
        for ours, theirs in SHARED_BASELINES.items():
            same = rows[(rows["method"] == theirs) & (rows["kind"] == kind)]
            frame = frame.merge(
                same[[*keys, "psnr"]].rename(columns={"psnr": f"paper_{ours}_{kind}"}), on=keys, how="left"
            )
    conventions = published.groupby(["task", "dataset"])["convention"].first().rename("paper_convention")
    images = published[published["image"] != ""].groupby(["task", "dataset"])["image"].nunique()
    frame = frame.merge(conventions.reset_index(), on=["task", "dataset"], how="left")
    return frame.merge(images.rename("paper_images").reset_index(), on=["task", "dataset"], how="left")


COLUMNS = [
    "task",
    "dataset",
    "image",
    "arch",
    "ours_restored",
    "ours_restored_std",
    "ours_oracle",
    "ours_oracle_std",
    "seeds",
    "images",
    "paper_dip_published",
    "paper_dip_derived",
    "difference_published",
    "difference_derived",
    "baseline_published",
    "baseline_published_method",
    "baseline_derived",
    "baseline_derived_method",
    *(
        f"{who}_{m}{kind}"
        for m in SHARED_BASELINES
        for who, kind in (("ours", ""), ("paper", "_published"), ("paper", "_derived"))
    ),
    "ours_convention",
    "paper_convention",
    "note",
]


def paper_vs_ours(
    runs: pd.DataFrame,
    dataset_of: Mapping[str, str],
    channels: Mapping[str, int],
    published: pd.DataFrame,
    baselines: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Our fits beside the paper's numbers, per image and per dataset mean (image MEAN).

    runs: runs.csv rows (status, task, task_label, factor, image, arch, seed, psnr_restored_png,
    oracle_psnr); dataset_of: image → dataset ("" for none: shown as "-" and joined with nothing the
    paper has unless the published table says "-"); channels: image → 1 or 3; published: a checked
    published table; baselines: our baselines' metrics rows (task_label, image, method, psnr), of which
    those the paper reports too (SHARED_BASELINES: CBM3D) fill ours_{method}, beside the paper's
    paper_{method}_{kind}. Columns `COLUMNS`: PSNR in dB; difference_{kind} = ours (restored) − the
    paper's DIP of that kind, empty where the conventions differ (said in `note`).
    """
    ours = _ours(runs, dataset_of, channels)
    table = ours.merge(_paper_cells(published), on=["task", "dataset", "image"], how="left")
    table = table.merge(_our_baselines(baselines, dataset_of), on=["task", "dataset", "image"], how="left")
    differs = table["paper_convention"].notna() & (table["paper_convention"] != table["ours_convention"])
    notes = [[] for _ in range(len(table))]
    for i in range(len(table)):
        row = table.iloc[i]
        if differs.iloc[i]:
            notes[i].append(
                f"conventions differ (ours {row['ours_convention']}, paper {row['paper_convention']}): not compared"
            )
        elif " + " in row["ours_convention"]:
            notes[i].append("mean over images scored differently")
        if row["image"] == MEAN and pd.notna(row["paper_images"]) and row["images"] != row["paper_images"]:
            notes[i].append(f"ours over {row['images']} of the paper's {int(row['paper_images'])} images")
    table["note"] = ["; ".join(n) for n in notes]
    for kind in KINDS:
        table[f"difference_{kind}"] = (table["ours_restored"] - table[f"paper_dip_{kind}"]).where(~differs)
    order = lambda c: c.str.lower().replace(MEAN.lower(), "~") if c.name == "image" else c  # noqa: E731
    return table.sort_values(["task", "dataset", "arch", "image"], key=order)[COLUMNS].reset_index(drop=True)


def discrepancy_notes(published: pd.DataFrame, tasks_datasets: set[tuple[str, str]]) -> dict[str, list[str]]:
    """Per task: a sentence for each (task, dataset) shown whose derived dataset mean differs from the
    printed one by more than MEAN_TOLERANCE_DB, naming both and the paper's other DIP rows."""
    notes: dict[str, list[str]] = {}
    means = dataset_means(published)
    for row in agreement(published).itertuples():
        if (row.task, row.dataset) not in tasks_datasets or abs(row.difference) <= MEAN_TOLERANCE_DB:
            continue
        others = (
            means[
                (means["task"] == row.task)
                & (means["dataset"] == row.dataset)
                & (means["kind"] == "published")
                & (means["role"] == "dip-variant")
            ]
            if row.role == "dip"
            else means.iloc[:0]
        )
        also = "".join(f", {o.method} {o.psnr:.2f}" for o in others.itertuples())
        # The printed row's own name where the table keeps it ("DIP (EMA)"), else ours.
        printed = published[
            (published["task"] == row.task)
            & (published["dataset"] == row.dataset)
            & (published["method"] == row.method)
            & (published["kind"] == "published")
            & (published["image"] == "")
        ].get("method_in_source", pd.Series(dtype=str))
        name = printed.iloc[0] if len(printed) and printed.iloc[0] else row.method
        notes.setdefault(row.task, []).append(
            f"{row.dataset}: the authors' {row.method} result images average {row.derived:.2f} dB (derived, "
            f"{row.images} images), the paper prints {row.published:.2f} for {name}"
            + (f" (also {also[2:]})" if also else "")
            + ". Which run produced "
            "the images is not stated, so the derived and published columns are not interchangeable here."
        )
    return notes


def _fmt(value: float, spread: float = float("nan")) -> str:
    if pd.isna(value):
        return ""
    return f"{value:.2f}" + (f" ± {spread:.2f}" if pd.notna(spread) else "")


def markdown(table: pd.DataFrame, published: pd.DataFrame) -> str:
    """The table as Markdown, one section per task, each followed by its sources and any discrepancy note."""
    notes = discrepancy_notes(published, set(zip(table["task"], table["dataset"])))
    lines = [
        "# Paper vs ours",
        "",
        "PSNR (dB). ours: restored.png (the image of the config's stopping rule: with `stop: fixed`, the paper "
        "configs', the EMA output at the end of the budget) and the oracle (best EMA "
        "iterate, analysis only), mean ± std over seeds (a dataset mean: over images, its spread over "
        "seeds). paper, published: a cell the paper prints; paper, derived: computed from the authors' own "
        "result images (data/published/README.md). The strongest other method is the paper's best non-DIP "
        "method of the dataset by its mean, per kind. Δ = ours (restored) − the paper's DIP of that kind, "
        "only where both use the same convention. Empty: no such number."
        + "".join(
            f" ours {name}: the bm3d package's {name} (the optional bm3d extra) on our observations, given the "
            f"true σ, mean over observation seeds, beside the paper's {name}."
            for m, name in SHARED_BASELINES.items()
            if table[f"ours_{m}"].notna().any()
        ),
        "",
    ]
    for task, part in table.groupby("task", sort=False):
        shown = pd.DataFrame(
            {
                "dataset": part["dataset"],
                "image": part["image"],
                "arch": part["arch"],
                "ours (restored)": [_fmt(v, s) for v, s in zip(part["ours_restored"], part["ours_restored_std"])],
                "ours (oracle)": [_fmt(v, s) for v, s in zip(part["ours_oracle"], part["ours_oracle_std"])],
                "paper DIP (published)": part["paper_dip_published"].map(_fmt),
                "paper DIP (derived)": part["paper_dip_derived"].map(_fmt),
                "Δ published": part["difference_published"].map(lambda v: "" if pd.isna(v) else f"{v:+.2f}"),
                "Δ derived": part["difference_derived"].map(lambda v: "" if pd.isna(v) else f"{v:+.2f}"),
                **{
                    f"strongest other ({kind})": [
                        f"{m} {v:.2f}" if pd.notna(v) else ""
                        for m, v in zip(part[f"baseline_{kind}_method"], part[f"baseline_{kind}"])
                    ]
                    for kind in KINDS
                },
                # A baseline the paper reports that we ran too (CBM3D, where the bm3d extra is installed).
                **{
                    column: part[key].map(_fmt)
                    for m, name in SHARED_BASELINES.items()
                    if part[f"ours_{m}"].notna().any()
                    for column, key in (
                        (f"ours {name}", f"ours_{m}"),
                        (f"paper {name} (published)", f"paper_{m}_published"),
                        (f"paper {name} (derived)", f"paper_{m}_derived"),
                    )
                },
                "seeds": part["seeds"],
                "convention": part["ours_convention"],
                "note": part["note"],
            }
        )
        lines += [f"## {task}", "", shown.to_markdown(index=False, disable_numparse=True), ""]
        shown_datasets = set(part["dataset"])
        sources = published[(published["task"] == task) & published["dataset"].isin(shown_datasets)]
        for kind in KINDS:
            named = sorted(set(sources.loc[sources["kind"] == kind, "source"]))
            if named:
                lines.append(f"Sources, {kind}: " + "; ".join(named) + ".")
        for note in notes.get(task, []):
            lines.append(f"Note: {note}")
        lines.append("")
    return "\n".join(lines)


def figure(table: pd.DataFrame):
    """Per task and dataset, per image and the mean: ours (each network, ± std over seeds; our CBM3D where
    we ran it) against the paper's DIP and its strongest other method, published (filled) and derived
    (open). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    panels = list(table.groupby(["task", "dataset"], sort=False))
    if not panels:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no fits to compare", ha="center", va="center")
        ax.set_axis_off()
        return fig
    width = max(7.0, 0.55 * max(p["image"].nunique() for _, p in panels) + 3)
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, 3.4 * len(panels)), squeeze=False)
    for ax, ((task, dataset), part) in zip(axes[:, 0], panels):
        images = list(dict.fromkeys(part["image"]))
        x = {image: i for i, image in enumerate(images)}
        archs = list(dict.fromkeys(part["arch"]))
        for j, arch in enumerate(archs):
            mine = part[part["arch"] == arch]
            offset = 0.12 * (j - (len(archs) - 1) / 2)
            ax.errorbar(
                [x[i] + offset for i in mine["image"]],
                mine["ours_restored"],
                yerr=mine["ours_restored_std"].fillna(0),
                fmt="o",
                ms=6,
                capsize=3,
                color=f"C{j}",
                label=f"ours, {arch} (restored, ± std over seeds)",
            )
        paper = part.drop_duplicates("image")
        for m, name in SHARED_BASELINES.items():  # our run of a baseline the paper has (CBM3D), on the image
            if paper[f"ours_{m}"].notna().any():
                ax.plot(
                    [x[i] for i in paper["image"]],
                    paper[f"ours_{m}"],
                    "v",
                    color="tab:green",
                    ms=7,
                    ls="none",
                    label=f"ours, {name}",
                )
        # Published (filled) left of ours, derived (open) right of it: where both exist they stay visible.
        for kind, fill, shift in (("published", True, -0.25), ("derived", False, 0.25)):
            style = dict(ls="none", ms=8, mew=1.5)
            where = [x[i] + shift for i in paper["image"]]
            if paper[f"paper_dip_{kind}"].notna().any():
                ax.plot(
                    where,
                    paper[f"paper_dip_{kind}"],
                    "D",
                    color="k",
                    mfc="k" if fill else "none",
                    label=f"paper DIP ({kind})",
                    **style,
                )
            if paper[f"baseline_{kind}"].notna().any():
                name = ", ".join(paper[f"baseline_{kind}_method"].dropna().unique())
                ax.plot(
                    where,
                    paper[f"baseline_{kind}"],
                    "s",
                    color="tab:orange",
                    mfc="tab:orange" if fill else "none",
                    label=f"{name} ({kind}, strongest other)",
                    **style,
                )
        if MEAN in x and len(images) > 1:
            ax.axvline(x[MEAN] - 0.5, color="0.7", lw=1, ls=":")
        ax.set_xticks(range(len(images)), images, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("PSNR (dB)")
        convention = part["ours_convention"].iloc[0]
        theirs = part["paper_convention"].dropna()
        title = f"{task} · {dataset} · {convention}"
        if len(theirs) and theirs.iloc[0] != convention:
            title += f" (paper: {theirs.iloc[0]}, not compared)"
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig
