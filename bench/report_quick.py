"""The README's quick-tune tables (screening, before and after, ASHA) from a bench JSON.

python bench/report_quick.py bench/results/cpu-YYYYMMDD-HHMMSS.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def screen_table(rows: list[dict]) -> str:
    """One line per screened recipe: training CPU s, the 10k fd_domain and the rarest class."""
    out = [
        "| recipe (one trial, 3 epochs of 8192 images) | train CPU s | fd_domain, 10k vs test "
        "| rarest class |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        s = r["best_10k"]
        out.append(
            f"| {r['label']} | {r['train_cpu_s']:.1f} | {s['fd_domain']:.2f} "
            f"| {100 * s['class_coverage_min']:.1f}% |"
        )
    return "\n".join(out)


def quick_table(q: dict) -> str:
    """The tune before and now: wall, trial-epochs, the winner and its 10k score."""

    def winner(side: dict) -> str:
        w = side["winner"]
        return f"{w['arch']}, {w['loss']}, lr_g {w['lr_g']:.2g}, lr_d {w['lr_d']:.2g}"

    b, n = q["before"], q["now"]
    cells = [
        ("config", f"`{b['config']}`", f"`{n['config']}`"),
        ("trials", b["trials"], n["trials"]),
        (
            "trial-epochs (images each)",
            f"{b['trial_epochs']} ({b['images_per_epoch']})",
            f"{n['trial_epochs']} ({n['images_per_epoch']})",
        ),
        ("tune wall time, 2 CPU cores", f"{b['wall_s']:.0f} s", f"{n['wall_s']:.0f} s"),
        ("winner", winner(b), winner(n)),
        (
            "winner's fd_domain, 10k vs test",
            f"{b['winner_10k']['fd_domain']:.2f}",
            f"{n['winner_10k']['fd_domain']:.2f}",
        ),
        (
            "winner's rarest class",
            f"{100 * b['winner_10k']['class_coverage_min']:.1f}%",
            f"{100 * n['winner_10k']['class_coverage_min']:.1f}%",
        ),
    ]
    out = ["| | before | now |", "|---|---|---|"]
    out += [f"| {a} | {x} | {y} |" for a, x, y in cells]
    out.append(
        f"\nfd_domain x{q['fd_domain_ratio']:.2f}, wall time x{q['wall_ratio']:.2f} (now / before)."
    )
    return "\n".join(out)


def main(path: str) -> int:
    data = json.loads(Path(path).read_text())
    if "screen" in data:
        print(screen_table(data["screen"]), end="\n\n")
    if "quick" in data:
        print(quick_table(data["quick"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
