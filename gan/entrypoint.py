"""The image's entrypoint: `docker run gan-job train|tune|final ...` runs gan; other commands
(bash, ray start, python jobs/tune.py) run as given."""

from __future__ import annotations

import os
import signal
import sys

from gan.cli import COMMANDS, RAY_JOBS
from gan.cli import main as gan_main

# gan's subcommands win over programs of the same name: Ray installs its own `serve` and `tune`
SUBCOMMANDS = ("train", *COMMANDS, *RAY_JOBS)


def main(argv: list[str] | None = None) -> int:
    """Run `gan ARGS` for a gan subcommand or option, else exec ARGS (bash, ray start, ...)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in SUBCOMMANDS or argv[0].startswith("-"):
        # as PID 1, an unhandled SIGTERM is dropped: let `docker stop` interrupt gan as Ctrl-C does
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        return gan_main(argv)
    try:
        os.execvp(argv[0], argv)  # replaces this process, so the command gets signals and exit code
    except OSError as e:  # cluster launchers pass their own commands: say what went wrong with it
        print(
            f"gan-entrypoint: cannot run {argv[0]!r}: {e.strerror}; gan subcommands are "
            f"{', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 127 if isinstance(e, FileNotFoundError) else 126


if __name__ == "__main__":
    sys.exit(main())
