"""`python -m bench [ROW ...]`: the benchmark rows, each against a reference measured in the same
run on the same machine, printed as they are measured and saved, with the machine, as one JSON
under bench/results/ (rewritten after each row). Only ratios and same-run numbers are reported;
GPU-only rows say "pending" where no GPU is present. No ROW: every row but `small` (hours long)
and `augment` (which reads `small`'s runs).
`python -m bench report` writes docs/benchmarks.md and its plots from the committed JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from bench import RESULTS, ROOT


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("rows", nargs="*", metavar="ROW", help="rows to run (or: report)")
    p.add_argument("--only", default="", help="rows, comma-separated (the same as ROW ...)")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run of every row")
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="prepared data and caches")
    p.add_argument(
        "--recipes",
        default="",
        help="quality, small, augment: comma-separated presets (or L=preset)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="L:KEY=VALUE",
        help="quality, small: a config value of recipe L (a screening variant of a preset)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="quality: epochs of every curve (default: 5 on a CPU, 30 on a GPU, 2 with --quick)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="quality, search, small: curves trained side by side (default: one per core on a "
        "CPU, 1 on a GPU)",
    )
    p.add_argument(
        "--fid-n",
        default="500",
        help="fid: sample counts, e.g. 500,5000 (a CPU runs Inception at ~14 img/s: 5 passes of n)",
    )
    p.add_argument(
        "--search-table",
        default="",
        help="search: the exhaustive table (table.json) of an earlier run of the same settings",
    )
    p.add_argument(
        "--search-population",
        default="pbt,pb2",
        help="search: the population methods, trained for real (pbt, pb2 or both)",
    )
    p.add_argument(
        "--sizes",
        default="1000,5000",
        help="small, augment: training subset sizes (1,000 and 200 epochs: about 1M images seen "
        "each)",
    )
    p.add_argument(
        "--score-only",
        action="store_true",
        help="small: score the checkpoints kept so far (in ~/.cache/gan-bench), train nothing",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        from bench.report import main as report

        return report(argv[1:])
    p = parser()
    args = p.parse_args(argv)
    from bench.common import machine
    from bench.rows import DEFAULT, ROWS

    names = [*args.rows, *(x for x in args.only.split(",") if x)] or DEFAULT
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        p.error(f"unknown row {', '.join(unknown)}; rows: {', '.join(ROWS)} (or: report)")
    out = {
        "machine": machine(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "quick": args.quick,
    }
    print(f"machine: {out['machine']}", flush=True)
    kind = "gpu" if out["machine"]["gpu"] else "cpu"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{kind}-{'quick-' if args.quick else ''}{stamp}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    from gan.config import GanError

    for name in ROWS:  # in the registry's order, whatever order they were named in
        if name in names:
            try:
                out[name] = ROWS[name].run(args)
            except GanError as e:  # what the row needs is missing: one line, what to run
                print(f"python -m bench: error: {e}", file=sys.stderr)
                return 2
            path.write_text(json.dumps(out, indent=2))  # what is measured so far survives a crash
    print(f"saved {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
