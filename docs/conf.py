"""Sphinx configuration of the dip documentation site: `make docs` builds it into docs/_build/html.

Pages are Markdown (myst-parser); the gallery (docs/examples/plot_*.py) runs at build time
(sphinx-gallery), so every picture and number in it is made by the code as it is; the CLI reference is
generated from dip.cli's parser (sphinx-argparse), the configuration reference from
workflow/schemas/config.schema.yaml (`config_reference` below), the API reference from the docstrings
(autodoc). The build needs no network: no intersphinx, no remote images or scripts.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the package from this checkout, as the tests import it

# The gallery's fits: on the CPU, with the machine's cores (CI's 2), never a GPU that a reader's copy finds.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from dip import __version__  # noqa: E402

project = "dip: Deep Image Prior"
author = "the dip authors"
copyright = "2026, the dip authors"  # noqa: A001 (Sphinx's name)
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinxarg.ext",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "examples", "Thumbs.db", ".DS_Store"]
# The home page's toctrees name the written pages by one-page glob patterns (`instal[l]`, `guide/*`), so that a
# page not written yet is left out rather than failing the build (`_PagesNotWrittenYet` below); a missing
# reference page, named without a pattern, still fails it.
myst_enable_extensions = ["colon_fence", "deflist"]
smartquotes = False  # `--observed` in the CLI's help stays two hyphens, not an en dash
myst_heading_anchors = 3  # "#the-protocol" style links between pages resolve, and the browser test checks them

# Docstrings write `name` for code (Markdown's habit): shown as code, never looked up as a cross-reference.
default_role = "literal"

# Warnings are errors (`make docs`: sphinx-build -W -n): a broken link or reference fails the build.
nitpicky = True
# Types of other libraries in signatures are not linked (no intersphinx: the build is offline).
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|np|numpy|pd|pandas|matplotlib|PIL|argparse|pathlib|collections|typing|os)(\..*)?"),
    (r"py:.*", r"(Path|Tensor|Figure|Axes|Callable|Mapping|Sequence|Iterable|Iterator|Any|Generator)"),
    (r"py:class", r"(dip\.[\w.]+\.)?_\w+"),  # private helpers named in public signatures
    (r"py:class", r"(optional|callable)"),
]

html_theme = "furo"
html_title = f"dip {__version__}"
html_static_path = ["_static"]
html_css_files = ["dip.css"]
html_show_sourcelink = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # torch.nn.Module.forward's own docstring is torch's to document


sphinx_gallery_conf = {
    "examples_dirs": ["examples"],
    "gallery_dirs": ["gallery"],
    "filename_pattern": r"/plot_",  # every plot_*.py runs at build time
    "abort_on_example_error": True,  # an example that fails fails the build
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    # No execution-times page: sphinx-gallery's loads jQuery and DataTables from a CDN (the site is offline).
    "write_computation_times": False,
    "show_signature": False,
    "min_reported_time": 1,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "capture_repr": (),
    "thumbnail_size": (320, 224),
    "doc_module": (),  # no per-function mini-galleries
    "backreferences_dir": None,
    # The examples run side by side, one per core (joblib's loky workers, each limited to its share of the
    # cores' threads): small fits use one thread better than two.
    "parallel": max(len(os.sched_getaffinity(0)), 1) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
}


# --- the configuration reference, rendered from the pipeline's JSON schema at build time -----------------


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _value(value) -> str:
    """A value as the YAML file spells it (true, not Python's True)."""
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _constraints(spec: dict) -> str:
    parts = []
    kind = spec.get("type")
    if kind == "array":
        items = spec.get("items", {})
        inner = items.get("type", "")
        parts.append(f"list of {inner}" if inner else "list")
        if "enum" in items:
            parts.append("each one of " + ", ".join(_value(v) for v in items["enum"]))
        if "minimum" in items:
            parts.append(f"each ≥ {items['minimum']}")
        if "exclusiveMinimum" in items:
            parts.append(f"each > {items['exclusiveMinimum']}")
        if "minItems" in spec:
            parts.append(f"at least {spec['minItems']}")
    elif kind:
        parts.append(kind)
    if "enum" in spec:
        parts.append("one of " + ", ".join(_value(v) for v in spec["enum"]))
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in spec:
            parts.append(f"{sign} {spec[key]}")
    if "pattern" in spec:
        parts.append(f"matches `{spec['pattern']}`")
    return "; ".join(parts)


def _rows(properties: dict, required: list, prefix: str) -> list[str]:
    rows = []
    for name, spec in properties.items():
        key = f"{prefix}{name}"
        what = _constraints(spec) + (f"; default {_value(spec['default'])}" if "default" in spec else "")
        needed = " (required)" if name in required else ""
        rows.append(f"| `{key}`{needed} | {_cell(what)} | {_cell(spec.get('description', ''))} |")
        if spec.get("type") == "object" and "properties" in spec:
            rows += _rows(spec["properties"], spec.get("required", []), f"{key}.")
        elif spec.get("type") == "object" and isinstance(spec.get("additionalProperties"), dict):
            entry = spec["additionalProperties"]
            rows += _rows(entry.get("properties", {}), entry.get("required", []), f"{key}.<name>.")
    return rows


def config_reference(schema_path: Path) -> str:
    """The schema's keys as one Markdown table: key (nested keys dotted, `tasks.<name>.` for each task
    entry) and whether it is required, type, range and default, description."""
    schema = yaml.safe_load(schema_path.read_text())
    lines = [
        "| key | type, range, default | description |",
        "|---|---|---|",
        *_rows(schema["properties"], schema.get("required", []), ""),
    ]
    return "\n".join(lines) + "\n"


def _write_generated(app) -> None:
    from dip.tasks import options_table

    out = DOCS / "_generated"
    out.mkdir(exist_ok=True)
    table = config_reference(ROOT / "workflow" / "schemas" / "config.schema.yaml")
    for name, text in (("config_table.md", table), ("task_options.md", options_table() + "\n")):
        path = out / name
        if not path.exists() or path.read_text() != text:  # rewritten only when changed: no needless rebuilds
            path.write_text(text)


class _PagesNotWrittenYet(logging.Filter):
    """Drops the one warning that a toctree glob matched no page (Sphinx gives it no type, so
    `suppress_warnings` cannot): the home page's one-page patterns leave a page out until it exists."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "didn't match any documents" not in str(record.msg)


def setup(app):
    logging.getLogger("sphinx.sphinx.directives.other").addFilter(_PagesNotWrittenYet())
    app.connect("builder-inited", _write_generated)
