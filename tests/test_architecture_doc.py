"""The project documents itself: no file cites design notes that are not in the repository, and every
citation of docs/architecture.md names a section it has."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE_NOTES = ("DESIGN.md", "STYLE.md", "PAPERS.md", "OFFLINE.md")
SKIP = {".venv", ".git", "out", "__pycache__", "hilo.egg-info"}


def project_files():
    for path in ROOT.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".md", ".toml", ".yaml", ".yml") and \
                not SKIP & set(path.relative_to(ROOT).parts):
            yield path


def test_no_citation_of_notes_outside_the_repository():
    this = Path(__file__).resolve()
    cited = [f"{p.relative_to(ROOT)}: {name}" for p in project_files() if p.resolve() != this
             for name in OUTSIDE_NOTES if name in p.read_text(encoding="utf-8", errors="replace")]
    assert not cited


def test_architecture_sections_cited_exist():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    headings = {line.lstrip("#").strip().split(" (")[0] for line in doc.splitlines() if line.startswith("#")}
    assert {"Parts", "The MoLoRA layer", "Proxies", "Tasks and offline data sources"} <= headings
    for path in project_files():
        for section in re.findall(r'docs/architecture\.md, "([^"]+)"', path.read_text(errors="replace")):
            assert section in headings or f"**{section}**" in doc, (path, section)
