"""Markdown tables for the results files."""

from __future__ import annotations


def md_table(headers, rows) -> str:
    """A markdown table; ``None`` cells print as '-'."""
    def cell(v):
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def pct(v) -> str | None:
    return None if v is None else f"{100 * v:.2f}"
