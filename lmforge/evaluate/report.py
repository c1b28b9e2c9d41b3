"""One comparison table, rows = models (or model + decoding), columns = metrics: Markdown, JSON, CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Optional

from lmforge.scoring.metrics import direction

Table = dict[str, dict[str, float]]  # row label -> metric name -> value


def columns(table: Table) -> list[str]:
    """Metric names in first-seen order."""
    return list(dict.fromkeys(k for row in table.values() for k in row))


def best_rows(table: Table, column: str) -> set[str]:
    """Rows holding the best value of ``column`` (by the metric's direction); empty for one row."""
    up = direction(column)
    vals = {
        r: v[column] for r, v in table.items() if isinstance(v.get(column), (int, float)) and math.isfinite(v[column])
    }
    if up is None or len(vals) < 2:
        return set()
    best = max(vals.values()) if up else min(vals.values())
    return {r for r, v in vals.items() if v == best}


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1e-4 or v == 0 else f"{v:.2e}"
    return str(v)


def to_markdown(table: Table) -> str:
    cols = columns(table)
    arrow = {c: {True: " ↑", False: " ↓", None: ""}[direction(c)] for c in cols}
    lines = ["| model | " + " | ".join(c + arrow[c] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    best = {c: best_rows(table, c) for c in cols}
    for r, vals in table.items():
        cells = [(f"**{_fmt(vals.get(c))}**" if r in best[c] else _fmt(vals.get(c))) for c in cols]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    cols = columns(table)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model"] + cols)
    for r, vals in table.items():
        w.writerow([r] + ["" if vals.get(c) is None else repr(float(vals[c])) for c in cols])
    return buf.getvalue()


def to_json(table: Table, meta: Optional[dict] = None) -> str:
    cols = columns(table)
    doc = {
        "meta": meta or {},
        "metrics": {c: {"higher_is_better": direction(c)} for c in cols},
        "results": [{"model": r, **{c: vals.get(c) for c in cols}} for r, vals in table.items()],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n"


def write_report(table: Table, out_dir: str | Path, stem: str = "eval", meta: Optional[dict] = None) -> dict[str, Path]:
    """Writes ``<stem>.md``, ``<stem>.json`` and ``<stem>.csv`` in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = {
        r: {c: (None if isinstance(v, float) and not math.isfinite(v) else v) for c, v in vals.items()}
        for r, vals in table.items()
    }
    paths = {"md": out / f"{stem}.md", "json": out / f"{stem}.json", "csv": out / f"{stem}.csv"}
    paths["md"].write_text(to_markdown(clean), encoding="utf-8")
    paths["json"].write_text(to_json(clean, meta), encoding="utf-8")
    paths["csv"].write_text(to_csv(clean), encoding="utf-8")
    return paths
