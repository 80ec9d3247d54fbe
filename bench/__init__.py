"""The benchmark lab: `python -m bench ROW...` measures rows against references run beside them
and saves them as JSON under bench/results/; `python -m bench report` writes docs/benchmarks.md
and its plots from the committed JSON. Rows live in bench/rows/ (the registry is
bench.rows.ROWS), the page in bench/report/."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
