"""The one Markdown table helper of the report: a cell formatter and a table writer."""

from __future__ import annotations


def fmt(v, spec: str = ".2f") -> str:
    """v formatted by spec; an en dash where there is no value."""
    return "–" if v is None else format(v, spec)


def table(header: list[str], align: str, rows: list[list]) -> str:
    """A Markdown table: align holds one letter a column, l (left) or r (right)."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([_row(header), rule, *(_row(r) for r in rows)])


def _row(cells: list) -> str:
    return "|" + "".join(f" {c} |" if str(c) else " |" for c in cells)
