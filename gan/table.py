"""Plain-text tables for the terminal: `gan evaluate`'s comparison and a tune's leaderboard."""

from __future__ import annotations


def text_table(rows: list[list[str]], gap: str = " ") -> str:
    """Rows of cells, the header first, as left-aligned columns joined by gap."""
    widths = [max(len(c) for c in col) for col in zip(*rows, strict=True)]
    return "\n".join(gap.join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
