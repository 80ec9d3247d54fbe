"""The error contract of every command line (gan, the tune and final jobs, the image's
entrypoint): a user error is one line and exit 2, SIGTERM stops a command as Ctrl-C does."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable

from gan.config import GanError


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


def guarded(prog: str, command: Callable[[], int | None], rerun: str, verbose: bool = False) -> int:
    """Run a command line's work: a user error or an unforeseen read or write prints one line
    `prog: error: ...` and exits 2; SIGTERM is handled as Ctrl-C, and a stop by either prints
    `prog: stopped ...; <rerun>` with 143 or 130."""
    with sigterm_as_sigint() as got:
        interrupted = False
        try:
            code = int(command() or 0)
        except GanError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:  # a write or read the commands did not foresee: still one line
            if verbose:
                raise
            where = f" {e.filename}" if e.filename else ""
            print(
                f"{prog}: error:{where} {e.strerror or e}; check the path, its permissions and "
                "free space (rerun with -v for details)",
                file=sys.stderr,
            )
            return 2
        except KeyboardInterrupt:
            interrupted = True
    if got or interrupted:  # Ray Tune stops gracefully on SIGINT: fit() returns, got says why
        what, code = stopped(got)
        print(f"{prog}: {what}; {rerun}", file=sys.stderr)
    return code
