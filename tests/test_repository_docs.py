"""Comments, docstrings and docs cite only documents inside the repository, and every list of
failure kinds in the docs names them all.

A maintainer with a fresh clone must be able to follow every reference. Notes on the LangGraph
wire live in docs/WIRE.md, decisions in docs/adr/, measurements in docs/PERFORMANCE.md and
docs/RELIABILITY.md; anything else is said in words.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()

#: The trees whose comments and docstrings are read (recursively), and single files.
TREES = ("exporter", "tests", "scripts", "bench", "soak", "mk", "docs")
SUFFIXES = {".py", ".sh", ".mk", ".md", ".toml"}
SINGLE = ("Makefile", "pyproject.toml", "Dockerfile")
#: Recorded server output and vendored environments are data, not prose.
SKIP_PARTS = {".venv", "node_modules", "data", "__pycache__"}

#: (what it is, pattern). Each names a document that is not in the repository.
FORBIDDEN: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "the wire report outside the repo (cite docs/WIRE.md §N)",
        re.compile(r"(?<![\w/.])wire §", re.I),
    ),
    ("the design notes outside the repo", re.compile(r"\bDESIGN(?:\.md)?\b")),
    ("the developers' rules outside the repo", re.compile(r"\bDEVELOPERS(?:\.md)?\b")),
    ("the style notes outside the repo", re.compile(r"\bSTYLE(?:\.md)? §")),
    ("an issue number", re.compile(r"\bissues? #?\d+", re.I)),
    (
        "an `owner #N` shorthand (give the URL or say it in words)",
        re.compile(r"\b[A-Za-z][\w.-]* #\d{2,}\b"),
    ),
    ("a path on the authors' machines", re.compile(r"/work/(?:shared|main|wt)\b")),
    ("a report outside the repo", re.compile(r"\b(?:REPORT|SHAPES)(?:\.md)?\b")),
)
#: A section sign must belong to an in-repo document named on the same line or the line above
#: (docs/WIRE.md may refer to its own sections bare).
SECTION = re.compile(r"§\s*\d")
SELF_REFERENCING = {"docs/WIRE.md"}
#: `docs/WIRE.md §N`, `docs/WIRE.md §2–§7`, `docs/WIRE.md §8, §11`: every N must be a section.
WIRE_CITATION = re.compile(r"docs/WIRE\.md\s+((?:§\d+(?:\s*[,–-]\s*)?)+)")
IN_REPO_DOC = re.compile(r"\b[\w./-]+\.md\b")


def _files() -> list[Path]:
    found = [ROOT / name for name in SINGLE if (ROOT / name).is_file()]
    found += sorted((ROOT / "demo").glob("*.py"))
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            rel_parts = set(path.relative_to(ROOT).parts)
            if path.is_file() and path.suffix in SUFFIXES and not rel_parts & SKIP_PARTS:
                found.append(path)
    return [p for p in found if p.resolve() != THIS]


def _offences(name: str, text: str) -> list[str]:
    """Each offending line of `text` as `name:line: what: text`."""
    out: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        where = f"{name}:{i + 1}"
        for what, pattern in FORBIDDEN:
            if pattern.search(line):
                out.append(f"{where}: {what}: {line.strip()}")
        if name in SELF_REFERENCING:
            continue
        if SECTION.search(line) and not IN_REPO_DOC.search(line):
            above = lines[i - 1] if i else ""
            if not IN_REPO_DOC.search(above):
                out.append(f"{where}: a § with no in-repo document named: {line.strip()}")
    return out


def test_the_scan_covers_the_code_and_the_docs() -> None:
    """The file walk finds the package, the tests and the docs (an empty scan would pass)."""
    names = {str(p.relative_to(ROOT)) for p in _files()}
    assert {
        "exporter/core/sse.py",
        "tests/support/scripted_server.py",
        "docs/PERFORMANCE.md",
    } <= names


@pytest.mark.parametrize(
    "line",
    [
        "# see wire §2",
        "(DESIGN §2)",
        "DEVELOPERS rule 4",
        "(STYLE §5)",
        "bounded (issue 7)",
        "copy (langgraph #6153)",
        "captures in /work/shared/wire/",
        "as in REPORT §2",
        "heartbeats (§2)",
    ],
)
def test_the_patterns_catch_outside_citations(line: str) -> None:
    """Each kind of outside citation is caught (the scan is not vacuous)."""
    assert _offences("x.py", f"x = 1\n{line}\n"), f"not caught: {line!r}"


def test_in_repo_citations_pass() -> None:
    """A citation of an in-repo document is allowed, also with a second § on the next line."""
    text = "# heartbeats (docs/WIRE.md §2)\n# stamps (docs/adr/0003-x.md;\n# §1, §3)\n"
    assert _offences("x.py", text) == []


def test_no_comment_cites_a_document_outside_the_repository() -> None:
    """Every `§`, issue and document reference points inside the repository."""
    offences = [
        o
        for path in _files()
        for o in _offences(
            str(path.relative_to(ROOT)), path.read_text(encoding="utf-8", errors="replace")
        )
    ]
    assert offences == [], "citations of documents outside the repository:\n" + "\n".join(offences)


def _wire_sections() -> set[int]:
    text = (ROOT / "docs" / "WIRE.md").read_text(encoding="utf-8")
    return {int(n) for n in re.findall(r"^## (\d+)\. ", text, flags=re.M)}


def test_wire_sections_are_numbered_one_to_n() -> None:
    """docs/WIRE.md has sections 1..N with no gap, so a cited number names one section."""
    sections = _wire_sections()
    assert sections == set(range(1, max(sections) + 1)), sorted(sections)


def test_every_cited_wire_section_exists() -> None:
    """Every `docs/WIRE.md §N` cited in the code, tests and docs is a section of docs/WIRE.md."""
    sections = _wire_sections()
    missing: list[str] = []
    for path in _files():
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        # A citation may wrap: `(docs/WIRE.md` at a line end and `§2–§7)` on the next line.
        text = "\n".join(lines)
        for m in WIRE_CITATION.finditer(text):
            for n in re.findall(r"§(\d+)", m.group(1)):
                if int(n) not in sections:
                    line_no = text.count("\n", 0, m.start()) + 1
                    missing.append(f"{path.relative_to(ROOT)}:{line_no}: §{n}")
    assert missing == [], "citations of sections docs/WIRE.md does not have:\n" + "\n".join(missing)


#: Every list of failure kinds in the docs: (file, text just before the list, text just after
#: it). Parenthesised remarks inside a list (`stalled` (no byte for `timeout.idle`)) are not
#: kinds.
FAILURE_KIND_LISTS = (
    ("README.md", "and why a probe failed:", "\n\nTimestamps"),
    ("README.md", "Otherwise a probe fails with one of:", "Measurements taken"),
    ("docs/WIRE.md", "(`exporter/core/errors.py`):", "\n## "),
    ("helm/langgraph-stream-exporter/README.md", "`langgraph_probe_runs_total`:", "\n\n"),
    ("dashboards/langgraph-stream-exporter.json", "(the reason label:", ")."),
)


@pytest.mark.parametrize(("name", "before", "after"), FAILURE_KIND_LISTS)
def test_failure_kind_lists_name_every_kind(name: str, before: str, after: str) -> None:
    """Each list of failure kinds in the docs names exactly the `FailureKind` values, so a new
    kind cannot be left out of them again."""
    from exporter.core.errors import FailureKind

    text = (ROOT / name).read_text(encoding="utf-8")
    start = text.index(before) + len(before)
    end = text.find(after, start)
    listed = re.sub(r"\([^)]*\)", "", text[start : end if end >= 0 else len(text)])
    words = re.findall(r"`(\w+)`", listed) if "`" in listed else re.findall(r"\w+", listed)
    kinds = [k.value for k in FailureKind]
    assert sorted(set(words)) == sorted(kinds), f"{name}: missing {set(kinds) - set(words)}"
