"""The `gan` command: train | evaluate | generate | serve. User errors print one line, exit 2."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
from pathlib import Path

from gan.config import (
    GanError,
    load_config,
    make_config,
    parse_overrides,
    presets,
    read_yaml,
)

# subcommands in their own modules, imported only when used: each has add_arguments() and run()
COMMANDS = {
    "evaluate": ("gan.evaluate", "score a run, checkpoint or experiment (FID, fd_domain, ...)"),
    "generate": ("gan.generate", "write generated images (PNG folder or ZIP), grids, latent walks"),
    "serve": ("gan.serve", "serve a generator over HTTP"),
}


def resolve_train_config(args) -> tuple[object, Path]:
    """The config and run directory of `gan train`: a new run, a resumed run, or --best."""
    if args.best:
        from gan.best import final_values

        cfg = make_config(final_values(args.from_dir, args.set))
        return cfg, Path(args.out) if args.out else Path("runs") / f"{cfg.name}-best"
    from gan.checkpoint import numbered

    out = Path(args.out) if args.out else None
    if (
        out
        and not (args.config or args.preset)
        and (out / "config.yaml").is_file()
        and numbered(out)
    ):
        # resuming a run: its own saved config, plus overrides such as epochs=...; a folder
        # without a checkpoint (a run that failed before training) is a new run, not a resume
        values = read_yaml(Path(args.out) / "config.yaml")
        values.update(parse_overrides(args.set))
        return make_config(values), Path(args.out)
    cfg = load_config(args.config, args.preset, args.set)
    return cfg, Path(args.out) if args.out else Path("runs") / cfg.name


@contextlib.contextmanager
def sigterm_as_sigint():
    """Handle SIGTERM (what Kubernetes, Ray and `docker stop` send) exactly as Ctrl-C: it runs
    the SIGINT handler in place (Python's KeyboardInterrupt, or Ray Tune's graceful stop).
    Yields a list that holds signal.SIGTERM once one arrived."""
    got = []

    def on_term(signum, frame):
        got.append(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):  # not SIG_IGN: a background `cmd &` may start with SIGINT ignored
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield got
        return
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, previous)


def stopped(got: list) -> tuple[str, int]:
    """How a stop is named, and its exit status (128 + the signal, as a shell reports it)."""
    return ("stopped by SIGTERM", 143) if got else ("interrupted", 130)


def run_train(args) -> int:
    from gan.checkpoint import numbered
    from gan.train import train

    cfg, out = resolve_train_config(args)
    print(f"training {cfg.arch} on {cfg.dataset} for {cfg.epochs} epochs in {out}", flush=True)

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        pass  # train() already logs metrics to log.jsonl, TensorBoard and the console

    with sigterm_as_sigint() as got:
        try:
            result = train(cfg, out, report)
        except KeyboardInterrupt:
            found = numbered(out)
            kept = (
                f"{found[-1]} is kept; rerun the same command to resume from it"
                if found
                else "no checkpoint was written yet; rerun the same command to start again"
            )
            what, code = stopped(got)
            print(f"gan: {what}; {kept}", file=sys.stderr)
            return code
    if result["status"] == "diverged":
        found = numbered(out)
        kept = f"{found[-1]} is the last good checkpoint" if found else "no checkpoint was kept"
        print(
            f"gan: run diverged at epoch {result['epoch']}; {kept}; lower lr_g/lr_d, or try "
            "loss=hinge or spectral_norm=true",
            file=sys.stderr,
        )
        return 3
    best = result["best_metric"]
    tail = f", best {cfg.metric} {best:.4g}" if best != float("inf") else ""
    print(f"done: epoch {result['epoch']}{tail}; outputs in {out}")
    return 0


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gan", description=__doc__.split(":")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a GAN (resumes when --out holds a checkpoint)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--config", help="YAML file of config values")
    src.add_argument("--preset", help=f"a shipped preset: {', '.join(presets())}")
    src.add_argument("--best", action="store_true", help="retrain a tune experiment's best config")
    t.add_argument("--from", dest="from_dir", help="the experiment directory for --best")
    t.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    t.add_argument("--out", help="run directory (default runs/<name>)")
    t.set_defaults(func=run_train)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name in argv:  # import only the subcommand in use (serve pulls in a web stack)
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gan` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        with sigterm_as_sigint() as got:
            return int(args.func(args) or 0)
    except GanError as e:
        print(f"gan: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write or read the commands did not foresee: still one line
        where = f" {e.filename}" if e.filename else ""
        print(
            f"gan: error:{where} {e.strerror or e}; check the path, its permissions and free "
            "space (rerun with -v for details)",
            file=sys.stderr,
        )
        if args.verbose:
            raise
        return 2
    except KeyboardInterrupt:
        what, code = stopped(got)
        print(f"gan: {what}; rerun the same command to start it again", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
