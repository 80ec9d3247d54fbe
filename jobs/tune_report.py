"""What a finished tune leaves in its experiment dir: best.yaml, trials.csv, comparison.png, and a
leaderboard on stdout. Works on local paths and on URIs (s3://...) through pyarrow's filesystems."""

from __future__ import annotations

import csv
import io
import math
import posixpath

import pyarrow.fs as pafs
import yaml
from PIL import Image, ImageDraw

from gan.config import GanError, make_config, to_dict
from gan.table import text_table

SHEET_TOP = 6  # configurations on the comparison sheet
DIVERGED = 1.0e9  # reported instead of inf: one inf in an ASHA rung makes its cutoff NaN/-inf
ORDER = {"completed": 0, "stopped": 1, "diverged": 2, "failed": 3}
USER_ERROR = "user_error"  # the last result of a trial that stopped on a user error: its message
# the columns a re-evaluation adds: the mean and spread of the metric over its new seeds
MEAN, STD, SEEDS = "seeds_mean", "seeds_std", "seeds"


def storage_fs(path: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path on it) for a local path or a URI such as s3://bucket/dir."""
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a whole file, creating its folder."""
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes | None:
    """A whole file, or None when it does not exist."""
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read()


def _user_error(history) -> str:
    last = history[-1].get(USER_ERROR) if history else None
    return last if isinstance(last, str) else ""


def _status(result, history, target: int) -> str:
    if result.error is not None or _user_error(history):
        return "failed"
    if history and history[-1].get("diverged"):
        return "diverged"
    if history and history[-1].get("epoch", 0) >= target:
        return "completed"
    return "stopped"  # by ASHA (or interrupted before its first report)


def error_text(error) -> str:
    """The cause of a trial's failure: a user error's own message, not Ray's wrapper around it
    (whose first line names a Ray actor)."""
    seen, cause = set(), error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, GanError):
            return str(cause).splitlines()[0][:500]
        cause = getattr(cause, "cause", None) or cause.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:500] if lines else type(error).__name__


def trial_rows(results, spec) -> list[dict]:
    """One row per trial, best first: status, best metric and its epoch, epochs reached, config."""
    rows = []
    sign = 1 if spec.mode == "min" else -1
    for result in results:
        history = _history(result, spec.metric)
        config = result.config or {}
        target = min(int(config.get("epochs", spec.base["epochs"])), spec.scheduler["max_t"])
        status = _status(result, history, target)
        scored = [h for h in history if not h.get("diverged") and _finite(h.get(spec.metric))]
        best = min(scored, key=lambda h: sign * h[spec.metric]) if scored else None
        rows.append(
            {
                "trial": posixpath.basename(result.path.rstrip("/")),
                "status": status,
                spec.metric: best[spec.metric] if best else math.nan,
                "best_epoch": int(best["epoch"]) if best else 0,
                "epochs": int(
                    max((h["epoch"] for h in history if _finite(h.get("epoch"))), default=0)
                ),
                **{k: config.get(k) for k in spec.search},
                "error": error_text(result.error) if result.error else _user_error(history),
                "_result": result,
            }
        )
    rows.sort(
        key=lambda r: (math.isnan(r[spec.metric]), sign * _nan0(r[spec.metric]), ORDER[r["status"]])
    )
    return rows


def _history(result, metric: str) -> list[dict]:
    """A trial's reported rows. Ray builds them from result.json, which came back empty for
    trials that PBT restarted (exploits) on local storage; progress.csv still holds them."""
    df = result.metrics_dataframe
    if df is not None and metric in df and len(df):
        return df.to_dict("records")
    data = read_bytes(result.filesystem, posixpath.join(result.path, "progress.csv"))
    if not data:
        return []
    import pandas as pd

    df = pd.read_csv(io.BytesIO(data))
    return df.to_dict("records") if metric in df else []


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and abs(v) < DIVERGED


def _nan0(v: float) -> float:
    return 0.0 if math.isnan(v) else v


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def leaderboard(rows: list[dict], spec) -> str:
    """A plain-text table of the trials, best first (by the seeds' mean when re-evaluated)."""
    cols = ["trial", "status", spec.metric, "best_epoch", "epochs", *spec.search]
    if rows and MEAN in rows[0]:
        cols[3:3] = [MEAN, STD, SEEDS]
    lines = [[str(i + 1), *(_fmt(r[c]) for c in cols)] for i, r in enumerate(rows)]
    return text_table([["#", *cols], *lines], gap="  ")


def _trials_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    fields = [k for k in rows[0] if not k.startswith("_")] if rows else ["trial"]
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: list(v) if isinstance(v, tuple) else v for k, v in r.items()})
    return out.getvalue().encode()


def _best_yaml(row: dict, spec) -> bytes:
    result = row["_result"]
    cfg = make_config(result.config)  # the complete config, checked again
    mean = ""
    if _finite(row.get(MEAN)):
        mean = (
            f"# ranked by the mean over {row[SEEDS]} new seeds: {spec.metric} "
            f"{row[MEAN]:.6g} +- {row[STD]:.3g} (std)\n"
        )
    head = (
        f"# best of tune experiment '{spec.name}': trial {row['trial']}, {spec.metric} "
        f"{row[spec.metric]:.6g} at epoch {row['best_epoch']} ({row['status']})\n{mean}"
        f"# trial dir: {result.path}\n"
        "# retrain it: gan train --best --from <this experiment dir> [--set epochs=1000]\n"
    )
    return (head + yaml.safe_dump(to_dict(cfg), sort_keys=False)).encode()


def latest_sample(fs: pafs.FileSystem, trial_path: str) -> tuple[bytes, str] | None:
    """The newest samples/epoch_*.png of a trial dir and its file name."""
    folder = pafs.FileSelector(posixpath.join(trial_path, "samples"), allow_not_found=True)
    pngs = sorted(
        i.path
        for i in fs.get_file_info(folder)
        if i.base_name.startswith("epoch_") and i.base_name.endswith(".png")
    )
    return (read_bytes(fs, pngs[-1]), posixpath.basename(pngs[-1])) if pngs else None


def comparison_sheet(rows: list[dict], spec, top: int = SHEET_TOP) -> bytes | None:
    """A PNG of the top configurations' latest sample grids side by side, each captioned."""
    panels = []
    for rank, row in enumerate(rows, 1):
        if len(panels) == top or not _finite(row[spec.metric]):
            break
        found = latest_sample(row["_result"].filesystem, row["_result"].path)
        if found is None:
            continue
        grid = Image.open(io.BytesIO(found[0])).convert("RGB")
        grid = grid.resize((256, round(256 * grid.height / grid.width)), Image.NEAREST)
        shown = int(found[1][6:-4])  # epoch_0006.png
        lines = [
            f"#{rank} {row['trial']} ({row['status']})",
            f"{spec.metric} {row[spec.metric]:.4g} @ epoch {row['best_epoch']} (grid: {shown})",
        ]
        lines += [f"{k}={_fmt(row[k])}" for k in spec.search]
        panels.append((grid, lines))
    if not panels:
        return None
    line_h, pad = 12, 8
    cap_h = line_h * max(len(lines) for _, lines in panels) + pad
    cols = min(3, len(panels))
    cell_w, cell_h = 256 + 2 * pad, max(g.height for g, _ in panels) + cap_h + 2 * pad
    sheet = Image.new("RGB", (cols * cell_w, math.ceil(len(panels) / cols) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (grid, lines) in enumerate(panels):
        x, y = (i % cols) * cell_w + pad, (i // cols) * cell_h + pad
        for j, text in enumerate(lines):
            draw.text((x, y + j * line_h), text[:44], fill="black")
        sheet.paste(grid, (x, y + cap_h))
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()


def publish(rows: list[dict], spec, exp_path: str) -> list[dict]:
    """Write best.yaml, trials.csv and comparison.png into the experiment dir; print the table.
    The winner is the first row that finished or was stopped: rows come best first."""
    fs, root = storage_fs(exp_path)
    write_bytes(fs, posixpath.join(root, "trials.csv"), _trials_csv(rows))
    print(f"\nexperiment {exp_path}: {len(rows)} trials, {spec.metric} ({spec.mode})")
    print(leaderboard(rows, spec))
    # a config that diverged (or crashed) later is a poor bet for a long retrain
    ok = [r for r in rows if _finite(r[spec.metric])]
    winner = next((r for r in ok if r["status"] in ("completed", "stopped")), ok[0] if ok else None)
    if winner is None:
        first = next((r["error"] for r in rows if r["error"]), "")
        raise GanError(
            f"no trial of {exp_path} reported a finite {spec.metric}"
            + (f"; the first error: {first}" if first else "")
            + "; see trials.csv and the trials' error.txt"
        )
    write_bytes(fs, posixpath.join(root, "best.yaml"), _best_yaml(winner, spec))
    sheet = comparison_sheet(rows, spec)
    if sheet is not None:
        write_bytes(fs, posixpath.join(root, "comparison.png"), sheet)
    print(
        f"best: trial {winner['trial']} {spec.metric} {winner[spec.metric]:.4g}; wrote best.yaml, "
        f"trials.csv{', comparison.png' if sheet else ''} in {exp_path}"
    )
    return rows
