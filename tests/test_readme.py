"""What a newcomer reads: the README stays short and its Python example runs, every relative link in the
README and the docs reaches a file (and a heading, where it names one), user-facing text speaks of the
project only, and CITATION.cff is valid YAML naming the paper.

Links into pages that the documentation build or the generated references make (docs/gallery/,
docs/reference/, docs/_static/) are checked only where the target is in the working tree: they are outputs
of `make docs` or of docs/make_headline.py, not files a page's author writes. Every other relative link
must reach a file that exists."""

import contextlib
import io
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 260

GENERATED = ("docs/gallery/", "docs/reference/", "docs/_static/")
# Words about how the project was made, not about the project; the changelog is the one page of history.
FORBIDDEN = [
    r"\bstop's\b",
    r"\bsession\b",
    r"\bissue \d+",
    r"\blent\b",
    r"before the redesign",
    r"\bthis stop\b",
]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def tracked(pattern: str) -> list[Path]:
    """Files under git matching a pathspec (untracked but not ignored ones too, so a new page counts)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", pattern],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted({ROOT / p for p in out if (ROOT / p).is_file()})


def user_facing() -> list[Path]:
    pages = [README, ROOT / "config" / "README.md", ROOT / "Makefile"]
    pages += [p for p in tracked("docs/*.md") if p.name != "changelog.md" or p.parent != ROOT / "docs"]
    pages += tracked("config/*.yaml")
    return pages


def linking_pages() -> list[Path]:
    return [README] + tracked("docs/*.md")


def slug(heading: str) -> str:
    """GitHub's (and myst-parser's) anchor of a Markdown heading: lower case, punctuation dropped, spaces
    to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)
    links = [a or b for a, b in LINK.findall(text)]
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link) and not link.startswith("#")]


def test_the_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; keep it under {MAX_README_LINES}"


@pytest.mark.parametrize("page", user_facing(), ids=lambda p: str(p.relative_to(ROOT)))
def test_user_facing_text_speaks_of_the_project_only(page):
    text = page.read_text()
    found = [
        f"{page.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}: {m.group(0)!r}"
        for pattern in FORBIDDEN
        for m in re.finditer(pattern, text, flags=re.I)
    ]
    assert not found, "\n".join(found)


def test_the_forbidden_words_are_caught():
    # The check above must be able to fail: each pattern matches a sentence that uses it.
    for sentence in [
        "this stop's code",
        "an earlier session",
        "issue 25 measured",
        "a GPU was lent",
        "Before the redesign it was slower",
        "measured in this stop",
    ]:
        assert any(re.search(p, sentence, flags=re.I) for p in FORBIDDEN), sentence
    assert not any(re.search(p, "the stopping rule stops; this stopping rule", flags=re.I) for p in FORBIDDEN)


@pytest.mark.parametrize("page", linking_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file(page):
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        name = target.relative_to(ROOT).as_posix() if target.is_relative_to(ROOT) else str(target)
        if name.startswith(GENERATED) and not target.exists():
            continue  # made by `make docs` or docs/make_headline.py (module docstring)
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {name}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_the_link_check_can_fail(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[a](missing.md) [b](page.md#title) [c](page.md#nowhere) `[d](x.md)`\n")
    assert relative_links(page) == ["missing.md", "page.md#title", "page.md#nowhere"]
    assert anchors(page) == {"title"}
    assert slug("Flash/no-flash") == "flashno-flash"
    assert slug("`dip.restore`'s options") == "diprestores-options"


def test_citation_cff_is_valid_and_names_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors"):
        assert cff.get(key), key
    assert cff["cff-version"] == "1.2.0"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Deep Image Prior"
    assert [a["family-names"] for a in paper["authors"]] == ["Ulyanov", "Vedaldi", "Lempitsky"]
    assert paper["year"] == 2018 and (paper["start"], paper["end"]) == (9446, 9454)
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert cff["license"] == "MIT"


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README holds one Python example"
    return blocks[0]


def test_the_readme_example_runs():
    # The README's example as written, with its budget cut from a few hundred iterations to 30 so that the
    # suite stays fast; the substitution must hit exactly once, so an edited example fails here, not silently.
    code, hits = re.subn(r'settings=\{"iterations": \d+\}', 'settings={"iterations": 30}', readme_example())
    assert hits == 1, "the README example sets its budget with settings={'iterations': N}"
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    result = namespace["result"]
    assert tuple(result.image.shape) == (1, 3, 64, 64)
    assert result.iterations <= 30
    assert 0 <= float(result.image.min()) and float(result.image.max()) <= 1
    assert re.fullmatch(r"noisy \d+\.\d\d dB, DIP \d+\.\d\d dB\n", printed.getvalue()), printed.getvalue()
