"""A benchmark's generated block in docs/benchmarks.md: replaced in place on every run, appended the first time."""

from __future__ import annotations

from pathlib import Path


def write_doc(doc: Path, block: list[str], *, section: str, start: str, end: str) -> None:
    """Replace the text between ``start`` and ``end`` in ``doc`` by ``block`` (or append ``section`` with it)."""
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    generated = "\n".join([start, *block, end])
    if start in text and end in text:
        text = text[:text.index(start)] + generated + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{generated}\n"
    doc.write_text(text)
