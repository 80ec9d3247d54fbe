"""`gan serve`: a small HTTP API over one loaded generator (optional extra: `gan[serve]`).

GET /generate?seed=S&count=N&class=K&nrow=R&scale=X returns a PNG: one image for count=1, else a
grid. Image i of seed S is image i of `gan generate --seed S`. GET /health says what is served.
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
from pathlib import Path

import torch

from gan.checkpoint import find_checkpoint, load_generator
from gan.config import GanError
from gan.device import resolve_device
from gan.sampling import (
    MAX_SEED,
    grid,
    model_classes,
    png_bytes,
    resolve_class,
    sample,
)

log = logging.getLogger(__name__)

MAX_COUNT = 64  # images per request; a bigger count is refused, not queued
PARAMS = ("seed", "count", "class", "nrow", "scale")
INSTALL = "gan serve needs its optional web stack: pip install 'gan[serve]' (starlette, uvicorn)"


def _int(query, key: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise GanError(f"{key}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise GanError(f"{key}={value} is out of range: use {lo} to {hi}")
    return value


def make_app(
    target: str | Path,
    device: str | torch.device = "cpu",
    max_count: int = MAX_COUNT,
    ema: bool = True,
):
    """A Starlette app serving the generator of a run dir or .pt file, loaded once."""
    if max_count < 1:
        raise GanError(f"--max-count {max_count}: must be at least 1")
    try:
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError:
        raise GanError(INSTALL) from None
    path = find_checkpoint(target)
    G, cfg, ckpt = load_generator(path, device, ema=ema)
    classes = model_classes(G, ckpt)
    lock = threading.Lock()  # one request on G at a time: torch already uses every core
    info = {
        "checkpoint": str(path),
        "arch": cfg.arch,
        "image_size": G.image_size,
        "channels": G.channels,
        "latent_dim": G.latent_dim,
        "conditional": bool(classes),
        "classes": {str(k): name for k, name in classes.items()},
        "max_count": max_count,
    }

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status_code=status)

    def health(request) -> JSONResponse:
        return JSONResponse({"status": "ok", **info})

    def generate(request) -> Response:  # a sync endpoint: Starlette runs it in a worker thread
        query = request.query_params
        try:
            unknown = sorted(set(query) - set(PARAMS))
            if unknown:
                raise GanError(f"unknown parameter(s) {unknown}; use {', '.join(PARAMS)}")
            seed = _int(query, "seed", 0, 0, MAX_SEED)
            count = _int(query, "count", 1, 1, max_count)
            nrow = _int(query, "nrow", 8, 1, max_count)
            scale = _int(query, "scale", 1, 1, 8)
            label = resolve_class(query["class"], classes) if "class" in query else None
        except GanError as e:  # the client's mistake: 400 with the reason
            return error(400, str(e))
        with lock:
            images, y = sample(G, seed, 0, count, label)
        body = grid(images, nrow, scale=scale) if count > 1 else grid(images, 1, 0, scale)
        headers = {"X-Seed": str(seed)}
        if y is not None:  # which class each image (grid cell, row by row) was asked to be
            headers["X-Classes"] = ",".join(str(int(k)) for k in y)
        return Response(png_bytes(body), media_type="image/png", headers=headers)

    async def http_error(request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, f"{exc.detail}: {request.url.path}; use /generate, /health")

    async def server_error(request, exc: Exception) -> JSONResponse:
        log.exception("request %s failed", request.url)
        return error(500, f"internal error ({type(exc).__name__}); the server is still up")

    routes = [Route("/health", health), Route("/generate", generate), Route("/", health)]
    handlers = {HTTPException: http_error, Exception: server_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def check_address(host: str, port: int) -> None:
    """GanError naming --port or --host when they cannot be an address to listen on."""
    if not 0 <= port <= 65535:
        raise GanError(f"--port {port}: a TCP port is 0..65535 (0: any free port)")
    if "\0" in host or any(c.isspace() for c in host):
        raise GanError(f"--host {host!r}: not a host name or address; e.g. 127.0.0.1 or 0.0.0.0")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), or GanError naming the address."""
    check_address(host, port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # "::1" is an IPv6 address
    try:
        return socket.create_server((host, port), family=family)
    except (OSError, OverflowError, ValueError, UnicodeError) as e:
        raise GanError(
            f"cannot listen on {host}:{port} ({getattr(e, 'strerror', None) or e}); "
            "check --host (e.g. 127.0.0.1 or 0.0.0.0), or pick another --port"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Run `gan serve` until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise GanError(INSTALL) from None
    check_address(args.host, args.port)  # before the generator loads: a typo fails at once
    max_count = MAX_COUNT if args.max_count is None else args.max_count
    if max_count < 1:
        raise GanError(f"--max-count {max_count}: must be at least 1")
    device = resolve_device(args.device, cli=True)
    app = make_app(args.target, device, max_count, not args.no_ema)
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"serving on http://{host}:{port}/generate?seed=0&count=16 (and /health); Ctrl-C stops")
    uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])
    return 0
