"""Plain-text tables for lab summaries (printed, and stored in the run as ``summary.txt``)."""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def sci(value: float | None, digits: int = 2) -> str:
    """Compact number for tables: '—' for missing, scientific notation for tiny/huge values."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if value != 0 and not 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits}e}"
    return f"{value:.{digits + 2}f}"
