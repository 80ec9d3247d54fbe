"""The Ray the jobs run on: a cluster's (RAY_ADDRESS), or a local one with token authentication."""

from __future__ import annotations

import os
import secrets
import signal
import threading
from pathlib import Path

import ray

from gan.config import GanError


def start_ray() -> None:
    """Join the cluster of RAY_ADDRESS (set by `ray job submit`), else start a local Ray with
    token authentication (RAY_AUTH_MODE=token unless the environment says otherwise). A local
    Ray's GCS and workers listen on this host's network address, not only on loopback; without
    the token nobody else on the network can submit work to them. Set explicitly, the mode is
    also one that Ray does not warn about at every start."""
    if ray.is_initialized():
        return
    if not os.environ.get("RAY_ADDRESS"):
        local_token_auth()
    ours = signal.getsignal(signal.SIGTERM)
    ray.init()
    if callable(ours) and threading.current_thread() is threading.main_thread():
        # ray.init puts its own SIGTERM handler in place (sys.exit(15)), which ends the driver
        # at once with no experiment state saved; the job's handler (SIGTERM as Ctrl-C, a
        # graceful Tune stop that the same command resumes) is put back
        signal.signal(signal.SIGTERM, ours)


def local_token_auth() -> None:
    """Token authentication for a local Ray that this process starts: RAY_AUTH_MODE=token unless
    the environment already says, and an owner-only token file. Ray reads the mode once, when
    it is imported, so its config is read again here, as Ray does when it turns the mode on."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"].lower() != "token":  # Ray reads the mode case-blind
        return
    owner_only_token()
    reload_ray_config()


def reload_ray_config() -> None:
    """Make this process's Ray read its environment again (as ray.init does for its own default)."""
    from ray._raylet import Config

    Config.initialize("")


def owner_only_token() -> Path | None:
    """The token file a local Ray authenticates with, made (or narrowed to) owner-only: Ray
    2.60 writes ~/.ray/auth_token with the umask's mode (0644 under 0022: readable by every user
    of the host). None when RAY_AUTH_TOKEN holds the token itself."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
                print(f"note: {path} was readable by other users; now owner-only", flush=True)
            return path
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))  # 256 bits, as Ray makes its own
    except OSError as e:
        raise GanError(
            f"cannot write the local Ray's token file {path} ({e.strerror}); set "
            "RAY_AUTH_TOKEN_PATH=FILE to a writable place, or RAY_AUTH_MODE=disabled on a "
            "single-user host"
        ) from None
    return path
