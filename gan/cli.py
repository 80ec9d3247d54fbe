"""The `gan` command: train | evaluate | generate | serve | tune | final. User errors print one
line, exit 2."""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import sys
from pathlib import Path

from gan.config import (
    PROTOCOLS,
    GanError,
    load_config,
    make_config,
    parse_overrides,
    presets,
    read_yaml,
)
from gan.errors import guarded, sigterm_as_sigint, stopped

# the arguments of every subcommand are here (the Ray jobs': jobs.commands), without torch or
# Ray, so that --help and usage errors answer at once; each subcommand's module (its run(args))
# is imported only when it runs


def device_argument(p: argparse.ArgumentParser) -> None:
    """--device, with one default in every subcommand (a GPU when there is one, as in train)."""
    p.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda:N")


def evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `gan evaluate`."""
    p.add_argument("paths", nargs="+", help="run dirs, checkpoint .pt files or experiment dirs")
    p.add_argument("--samples", type=int, help="generated images (default: the run's fid_samples)")
    p.add_argument("--kid", action="store_true", help="also compute KID")
    p.add_argument("--prc", action="store_true", help="also precision/recall (VGG16 weights)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), help="a published FID protocol")
    p.add_argument(
        "--metric", choices=("fid", "fd_domain"), default="fid", help="fd_domain: no Inception"
    )
    p.add_argument("--fid-weights", help="local Inception weights (default $GAN_FID_WEIGHTS)")
    p.add_argument(
        "--utility",
        action="store_true",
        help="also train a small classifier on the real training set, on it plus generated "
        "images, and on generated images alone (conditional G; about a minute on a CPU)",
    )
    p.add_argument("--data-dir", help="where data and caches live (default: the run's)")
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config keys over the run's, as in train (e.g. fid_samples=10000 fid_ref_split=test)",
    )
    device_argument(p)
    p.add_argument(
        "--check-classes",
        action="store_true",
        help="instead of scoring: print how often an in-domain classifier recognises each class "
        "(--samples images a class, default 100), as gan generate --check-classes; writes nothing",
    )


def generate_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `gan generate`."""
    p.add_argument("target", metavar="RUN_DIR|CHECKPOINT", help="a run directory or a .pt file")
    p.add_argument(
        "--n", type=int, help="images to write (default 64; per class with --check-classes: 100)"
    )
    p.add_argument("--out", help="a new folder or FILE.zip of PNGs (a folder for --interpolate)")
    p.add_argument("--seed", type=int, default=0, help="the same seed writes the same images")
    p.add_argument(
        "--class",
        dest="klass",
        metavar="K",
        help="a class name or index (conditional models; default: every class in turn)",
    )
    p.add_argument("--batch", type=int, default=256, help="images per step; memory holds one batch")
    device_argument(p)
    p.add_argument("--no-ema", action="store_true", help="use the raw G, not its EMA copy")
    w = p.add_argument_group("latent walks")
    w.add_argument(
        "--interpolate",
        action="store_true",
        help="write strips, grid.png and walk.gif between --seeds or --latents",
    )
    w.add_argument(
        "--seeds",
        default="0,1,2,3",
        help="key points: the first image of each seed (default 0,1,2,3)",
    )
    w.add_argument("--latents", help="key points from a .npy/.pt file of shape (K, latent_dim)")
    w.add_argument("--steps", type=int, default=8, help="images per strip, frames per GIF segment")
    w.add_argument(
        "--mode", choices=("slerp", "linear"), default="slerp", help="spherical or straight paths"
    )
    w.add_argument("--scale", type=int, default=1, help="enlarge strips, grid and GIF N times")
    p.add_argument(
        "--check-classes",
        action="store_true",
        help="print how often an in-domain classifier recognises each class; writes nothing",
    )


def serve_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `gan serve`."""
    p.add_argument("target", metavar="RUN_DIR|CHECKPOINT", help="a run directory or a .pt file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port)")
    p.add_argument("--max-count", type=int, help="most images per request (default 64)")
    device_argument(p)
    p.add_argument("--no-ema", action="store_true", help="serve the raw G, not its EMA copy")


def run_evaluate(args) -> int:
    """`gan evaluate`; with --check-classes, the class table of `gan generate --check-classes`
    for each run found instead of its scores."""
    if not args.check_classes:
        return run_module("gan.evaluate", args)
    from gan.checkpoint import load_generator
    from gan.device import resolve_device
    from gan.evaluate import check_classes, eval_config, find_runs, print_class_table
    from gan.sampling import model_classes

    if args.samples is not None and args.samples < 2:
        raise GanError(f"--samples {args.samples}: check at least 2 images per class")
    device = resolve_device(args.device, cli=True)
    for ckpt in find_runs(args.paths):
        print(f"checking the classes of {ckpt}", flush=True)
        G, cfg, state = load_generator(ckpt, device)
        rows = check_classes(
            G, eval_config(cfg, args), model_classes(G, state), args.samples or 100
        )
        print_class_table(rows)
    return 0


# name: (the module whose run(args) runs it, or the function that does, help, its arguments)
COMMANDS = {
    "evaluate": (
        run_evaluate,
        "score a run, checkpoint or experiment (FID, fd_domain, ...)",
        evaluate_arguments,
    ),
    "generate": (
        "gan.generate",
        "write generated images (PNG folder or ZIP), grids, latent walks",
        generate_arguments,
    ),
    "serve": ("gan.serve", "serve a generator over HTTP", serve_arguments),
}
# the Ray jobs, jobs/<name>.py: their help and arguments are in jobs.commands, their run(args)
# in jobs.<name> (which imports Ray)
RAY_JOBS = ("tune", "final")


def resolve_train_config(args) -> tuple[object, Path]:
    """The config and run directory of `gan train`: a new run, a resumed run, or --best."""
    if args.best:
        from gan.best import final_values

        values, note = final_values(args.from_dir, args.set)
        cfg = make_config(values)
        if note:
            print(f"final retrain: {note}", flush=True)
        return cfg, Path(args.out) if args.out else Path("runs") / f"{cfg.name}-best"
    out = Path(args.out) if args.out else None
    if out and not (args.config or args.preset) and (out / "config.yaml").is_file():
        from gan.checkpoint import numbered  # torch: only for a folder that may be resumed

        if numbered(out):
            # resuming a run: its own saved config, plus overrides such as epochs=...; a folder
            # without a checkpoint (a run that failed before training) is a new run, not a resume
            values = read_yaml(out / "config.yaml")
            values.update(parse_overrides(args.set))
            return make_config(values), out
    cfg = load_config(args.config, args.preset, args.set)
    return cfg, Path(args.out) if args.out else Path("runs") / cfg.name


def run_train(args) -> int:
    cfg, out = resolve_train_config(args)  # config errors come before torch is imported
    from gan.checkpoint import numbered
    from gan.train import train

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


def build_parser() -> argparse.ArgumentParser:
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
    for name, (module, help_, add_arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_arguments(p)
        run = module if callable(module) else functools.partial(run_module, module)
        p.set_defaults(func=run)
    from jobs.commands import JOBS  # no Ray: a job's module is imported only when it runs

    for name in RAY_JOBS:
        help_, add_arguments, rerun = JOBS[name]
        p = sub.add_parser(
            name, help=help_, description=f"{help_}; python jobs/{name}.py is the same"
        )
        add_arguments(p)
        p.set_defaults(func=functools.partial(run_job, name), rerun=rerun)
    return parser


def run_job(name: str, args) -> int:
    """A Ray job: its config's errors answer at once, then its module (Ray, torch) runs it."""
    from jobs.commands import CHECKS

    CHECKS[name](args)
    return run_module(f"jobs.{name}", args)


def run_module(module: str, args) -> int:
    """Import a subcommand's module (torch, a web stack, Ray) and run it."""
    return importlib.import_module(module).run(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gan` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    rerun = getattr(args, "rerun", "rerun the same command to start it again")
    return guarded("gan", lambda: args.func(args), rerun, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
