"""Writing the results: ``benchmarks/results.json`` and the table in ``docs/performance.md``."""

from __future__ import annotations

import json
from pathlib import Path

from .common import ROOT

RESULTS = Path(__file__).resolve().parent / "results.json"
DOC = ROOT / "docs" / "performance.md"
START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"


def _number(value) -> str:
    if value is None:
        return "–"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"


def table(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| Figure | Value | Baseline | Ratio | Unit | Goal | Holds |",
        "| --- | ---: | ---: | ---: | --- | --- | :---: |",
    ]
    for item in rows:
        lines.append(
            f"| {item['name']} | {_number(item['value'])} | {_number(item['baseline'])} | "
            f"{_number(item['ratio'])} | {item['unit']} | {item['goal']} | "
            f"{'yes' if item['holds'] else '**no**'} |"
        )
    return "\n".join(lines)


def write(rows: list[dict], header: str, *, merge: bool) -> None:
    """Write results.json (merged by name with the previous file for a partial run) and the
    doc's table between its markers."""
    if merge and RESULTS.exists():
        previous = json.loads(RESULTS.read_text(encoding="utf-8"))
        names = {item["name"] for item in rows}
        rows = [item for item in previous if item["name"] not in names] + rows
        rows.sort(key=lambda item: item["name"].split(".", 1)[0])
    RESULTS.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if DOC.exists():
        text = DOC.read_text(encoding="utf-8")
        if START in text and END in text:
            before, rest = text.split(START, 1)
            _old, after = rest.split(END, 1)
            text = f"{before}{START}\n{table(rows, header)}\n{END}{after}"
            DOC.write_text(text, encoding="utf-8")
