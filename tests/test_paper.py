"""The paper's numbers (data/published) and the paper-vs-ours table (dip.paper), on synthetic runs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dip import manifest as manifest_io
from dip import paper
from dip.image_io import InputError

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "data" / "published" / "dip_cvpr2018.csv"
# The manifest of each dataset the published table names, and the pipeline task labels run on it.
MANIFESTS = {"Set5": "sr.tsv", "Set14": "sr.tsv", "denoise9": "denoise9.tsv", "restoration11": "restoration11.tsv"}
TASKS = {
    "sr-x4": ("sr", 4),
    "sr-x8": ("sr", 8),
    "denoise-s25": ("denoise", None),
    "denoise-s50": ("denoise", None),
    "inpaint-drop0.5": ("inpaint", None),
}


@pytest.fixture(scope="module")
def published():
    return paper.read_published(PUBLISHED)


def manifest_ids(dataset: str) -> list[str]:
    frame = manifest_io.read(ROOT / "data" / "paper" / MANIFESTS[dataset])
    return list(frame.index[frame["dataset"] == dataset])


def test_the_published_table_loads_with_a_kind_and_source_per_row_and_unique_keys(published):
    assert len(published) == 421 and not published.duplicated(paper.KEY).any()
    assert set(published["kind"]) == set(paper.KINDS) and (published["source"].str.len() > 10).all()
    assert (published["kind"] == "derived").sum() == 382
    # Each kind names its own sources: a derived row never cites the paper's text, nor the reverse.
    derived = published["kind"] == "derived"
    assert published.loc[derived, "source"].str.contains("result images").all()
    assert not published.loc[~derived, "source"].str.contains("result images").any()
    # One convention per task and dataset; the SR rows use the authors' script's (4 px at x4 and x8).
    assert set(published.loc[published["task"].str.startswith("sr"), "convention"]) == {"Y, shave 4"}


def test_every_image_of_the_published_table_is_an_id_of_its_manifest(published):
    cells = published[published["image"] != ""]
    for dataset, part in cells.groupby("dataset"):
        ids = manifest_ids(dataset)
        assert set(part["image"]) == set(ids), dataset  # every row joins, and every image has numbers
    # The paper's short names map to the authors' file names explicitly, one alias per image.
    aliases = cells.loc[cells["image"] != cells["image_in_source"], ["image_in_source", "image"]].drop_duplicates()
    assert dict(aliases.values) == {
        "Barbara": "barbara",
        "Boat": "boat",
        "House": "house",
        "Lena": "Lena512",
        "Peppers": "peppers256",
        "C.man": "Cameraman256",
        "Couple": "couple",
        "Finger": "fingerprint",
        "Hill": "hill",
        "Man": "man",
        "Montage": "montage",
    }
    assert manifest_ids("denoise9") == [
        "F16",
        "baboon",
        "hill",
        "kodim01",
        "kodim02",
        "kodim03",
        "kodim12",
        "lena",
        "peppers",
    ]


def test_derived_dataset_means_agree_with_the_printed_ones_but_the_denoising_dip(published):
    pairs = paper.agreement(published).set_index(["task", "dataset", "method"])
    # SR x4 (DIP, bicubic, SRResNet) and x8 (DIP, bicubic) on Set5 and Set14, denoising (DIP, CBM3D, NLM),
    # restoration (DIP, Papyan et al.).
    assert len(pairs) == 3 * 2 + 2 * 2 + 3 + 2
    # The authors' DIP denoising images are another run than the printed rows: a documented discrepancy.
    dip = pairs.loc[("denoise-s25", "denoise9", "DIP")]
    assert round(dip["derived"], 2) == 31.29 and dip["published"] == 30.43 and dip["images"] == 9
    rest = pairs.drop(index=("denoise-s25", "denoise9", "DIP"))
    assert (rest["difference"].abs() <= paper.MEAN_TOLERANCE_DB + 1e-9).all(), rest[["published", "derived"]]


def test_derived_cells_agree_with_the_printed_cells_per_image(published):
    cells = published[(published["image"] != "") & published["role"].isin(["dip", "baseline"])]
    both = cells[cells["kind"] == "published"].merge(
        cells[cells["kind"] == "derived"], on=["task", "dataset", "image", "method"]
    )
    assert len(both) == 22  # the restoration table: 11 images, DIP and Papyan et al.
    gap = (both["psnr_x"] - both["psnr_y"]).abs()
    # Per image the two agree to 0.16 dB at worst (House, DIP), looser than the means (README).
    assert gap.max() <= paper.IMAGE_TOLERANCE_DB + 1e-9 and gap.max() > paper.MEAN_TOLERANCE_DB


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: pd.concat([f, f.iloc[:1]]), "appears twice"),
        (lambda f: f.assign(kind=["published"] * (len(f) - 1) + ["typed"]), "kind 'typed'"),
        (lambda f: f.assign(source=[""] + list(f["source"][1:])), "row 2: empty source"),
        (lambda f: f.drop(columns="kind"), "no column 'kind'"),
        (lambda f: f.assign(psnr=["x"] + list(f["psnr"][1:])), "psnr is not a number"),
    ],
)
def test_a_bad_published_table_is_named(tmp_path, change, message):
    frame = pd.read_csv(PUBLISHED, dtype=str, keep_default_na=False).head(5)
    path = tmp_path / "bad.csv"
    change(frame).to_csv(path, index=False)
    with pytest.raises(InputError, match=message):
        paper.read_published(path)


def synthetic_runs(images: dict[str, list[str]], seeds=(0, 1), archs=("skip",)) -> pd.DataFrame:
    """runs.csv rows for every task label → images, seed and arch, with distinct made-up scores."""
    rng = np.random.default_rng(0)
    rows = []
    for label, names in images.items():
        task, factor = TASKS.get(label, ("denoise", None))
        for image in names:
            for arch in archs:
                for seed in seeds:
                    rows.append(
                        {
                            "task": task,
                            "task_label": label,
                            "factor": factor,
                            "image": image,
                            "arch": arch,
                            "seed": seed,
                            "status": "ok",
                            "psnr_restored_png": 25 + 5 * rng.random(),
                            "oracle_psnr": 31 + rng.random(),
                        }
                    )
    return pd.DataFrame(rows)


def test_paper_vs_ours_keeps_published_and_derived_apart(published):
    runs = synthetic_runs({"sr-x4": ["baby", "bird"], "sr-x8": ["baby"], "denoise-s25": ["F16", "astronaut"]})
    dataset = {"baby": "Set5", "bird": "Set5", "F16": "denoise9", "astronaut": ""}
    table = paper.paper_vs_ours(runs, dataset, {i: 3 for i in dataset}, published).set_index(
        ["task", "dataset", "image", "arch"]
    )
    baby = table.loc[("sr-x4", "Set5", "baby", "skip")]
    ours = runs[(runs["image"] == "baby") & (runs["task_label"] == "sr-x4")]["psnr_restored_png"]
    assert baby["ours_restored"] == pytest.approx(ours.mean()) and baby["ours_restored_std"] == pytest.approx(
        ours.std(ddof=0)
    )
    assert baby["paper_dip_derived"] == 31.49 and pd.isna(baby["paper_dip_published"])  # no printed cell
    assert baby["difference_derived"] == pytest.approx(ours.mean() - 31.49) and pd.isna(baby["difference_published"])
    assert (baby["baseline_derived_method"], baby["baseline_derived"]) == ("SRResNet", 33.66)
    mean = table.loc[("sr-x4", "Set5", paper.MEAN, "skip")]
    assert mean["paper_dip_published"] == 29.90 and mean["paper_dip_derived"] == pytest.approx(29.898)
    assert (mean["baseline_published_method"], mean["baseline_published"]) == ("SRResNet", 32.10)
    assert "ours over 2 of the paper's 5 images" in mean["note"]
    assert mean["seeds"] == 2 and mean["ours_restored_std"] >= 0
    # x8: we shave 8 px, the authors' script 4: shown side by side, never differenced.
    x8 = table.loc[("sr-x8", "Set5", "baby", "skip")]
    assert x8["paper_dip_derived"] == 28.28 and pd.isna(x8["difference_derived"])
    assert x8["note"].startswith("conventions differ")
    # An image the paper does not have: its cells stay empty.
    astronaut = table.loc[("denoise-s25", "-", "astronaut", "skip")]
    assert astronaut[["paper_dip_published", "paper_dip_derived", "baseline_derived"]].isna().all()
    text = paper.markdown(table.reset_index(), published)
    assert "| paper DIP (published) | paper DIP (derived) |" in text.replace("  ", "")
    assert "31.29 dB" in text and "30.43" in text and "DIP (two runs averaged) 31.00" in text
    assert "Sources, derived: the authors' result images" in text
    fig = paper.figure(table.reset_index())
    assert len(fig.axes) == 4  # sr-x4 Set5, sr-x8 Set5, denoise-s25 denoise9 and "-"


def test_paper_vs_ours_renders_every_paper_dataset_in_full(published):
    """A stand-in run of every paper config on all its images: every cell the paper has is filled."""
    tables = []
    for manifest, labels in (
        ("sr.tsv", ["sr-x4", "sr-x8"]),
        ("denoise9.tsv", ["denoise-s25", "denoise-s50"]),
        ("restoration11.tsv", ["inpaint-drop0.5"]),
    ):
        frame = manifest_io.read(ROOT / "data" / "paper" / manifest)
        runs = synthetic_runs({label: list(frame.index) for label in labels}, seeds=(0, 1, 2))
        channels = {i: 1 if manifest.startswith("restoration") else 3 for i in frame.index}
        tables.append(paper.paper_vs_ours(runs, frame["dataset"].to_dict(), channels, published))
    table = pd.concat(tables, ignore_index=True)
    restoration = manifest_ids("restoration11")
    assert len(table) == 2 * (19 + 2) + 2 * (9 + 1) + 11 + 1
    assert (
        table[["ours_restored", "paper_dip_derived", "baseline_derived", "baseline_derived_method"]].notna().all().all()
    )
    assert (table["note"] != "").sum() == 19 + 2  # only x8's conventions differ
    printed = table[table["paper_dip_published"].notna()]
    assert set(zip(printed["task"], printed["image"])) >= {("inpaint-drop0.5", i) for i in restoration}
    assert set(printed.loc[printed["task"].str.startswith("sr"), "image"]) == {paper.MEAN}
    assert not printed.loc[printed["task"] == "denoise-s50"].size  # sigma 50: derived only
    restoration_mean = table[(table["task"] == "inpaint-drop0.5") & (table["image"] == paper.MEAN)].iloc[0]
    assert (restoration_mean["paper_dip_published"], restoration_mean["baseline_published_method"]) == (
        33.48,
        "Papyan et al. (CSC)",
    )
    assert "31.29 dB" in paper.markdown(table, published)


def test_paper_vs_ours_shows_our_cbm3d_beside_the_papers_when_we_ran_it(published):
    runs = synthetic_runs({"denoise-s25": ["F16", "baboon"], "sr-x4": ["baby"]})
    dataset = {"F16": "denoise9", "baboon": "denoise9", "baby": "Set5"}
    # Our CBM3D (the bm3d extra) on F16 for two observation seeds, on baboon for one; other baselines beside it.
    baselines = pd.DataFrame(
        [
            {"task_label": "denoise-s25", "image": "F16", "observation_seed": 0, "method": "cbm3d", "psnr": 32.0},
            {"task_label": "denoise-s25", "image": "F16", "observation_seed": 1, "method": "cbm3d", "psnr": 33.0},
            {"task_label": "denoise-s25", "image": "baboon", "observation_seed": 0, "method": "cbm3d", "psnr": 26.0},
            {"task_label": "denoise-s25", "image": "F16", "observation_seed": 0, "method": "nlm", "psnr": 29.0},
            {"task_label": "sr-x4", "image": "baby", "observation_seed": 0, "method": "bicubic", "psnr": 30.0},
        ]
    )
    baselines.insert(1, "task", baselines["task_label"].str.split("-").str[0])  # as metrics.csv has it
    table = paper.paper_vs_ours(runs, dataset, {i: 3 for i in dataset}, published, baselines).set_index(
        ["task", "dataset", "image", "arch"]
    )
    f16 = table.loc[("denoise-s25", "denoise9", "F16", "skip")]
    assert f16["ours_cbm3d"] == pytest.approx(32.5) and f16["paper_cbm3d_derived"] == 32.67
    assert pd.isna(f16["paper_cbm3d_published"])  # the paper prints its mean only
    mean = table.loc[("denoise-s25", "denoise9", paper.MEAN, "skip")]
    assert mean["ours_cbm3d"] == pytest.approx((32.5 + 26.0) / 2) and mean["paper_cbm3d_published"] == 31.42
    assert table.loc[("sr-x4", "Set5", "baby", "skip")][["ours_cbm3d", "paper_cbm3d_derived"]].isna().all()
    text = paper.markdown(table.reset_index(), published)
    denoise, sr = text.split("## sr-x4")[0], text.split("## sr-x4")[1]
    assert "| ours CBM3D | paper CBM3D (published) | paper CBM3D (derived) |" in denoise.replace("  ", "")
    assert "31.42" in denoise and "29.25" in denoise  # (32.5 + 26) / 2, beside the paper's
    assert "ours CBM3D" not in sr  # no run of ours there: no column
    fig = paper.figure(table.reset_index())
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert labels[0].count("ours, CBM3D") == 1 and "ours, CBM3D" not in labels[1]  # denoise9, then Set5
    # Without our CBM3D (bm3d not installed) the table has the columns, empty, and the Markdown none of them.
    plain = paper.paper_vs_ours(
        runs, dataset, {i: 3 for i in dataset}, published, baselines[baselines["method"] != "cbm3d"]
    )
    assert plain["ours_cbm3d"].isna().all() and list(plain.columns) == paper.COLUMNS
    assert "ours CBM3D" not in paper.markdown(plain, published)
    assert paper.paper_vs_ours(runs, dataset, {i: 3 for i in dataset}, published).equals(plain)
