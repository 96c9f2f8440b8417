"""Markdown tables for check and materialization metadata (the UI renders them)."""

from collections.abc import Iterable, Sequence

import dagster as dg


def markdown_table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], empty: str = "none"
) -> dg.MetadataValue:
    """A table with one row per item; `empty` when there is none."""
    lines = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    if not lines:
        return dg.MetadataValue.md(empty)
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return dg.MetadataValue.md(header + "\n".join(lines))
