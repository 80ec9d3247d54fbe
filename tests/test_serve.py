"""`gan serve`: real HTTP on 127.0.0.1, PNGs equal to `gan generate`'s, 4xx JSON, stays up."""

import io
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from fixtures_data import tiny_config
from PIL import Image

from gan.cli import main
from gan.config import GanError
from gan.generate import generate_images
from gan.serve import listen, make_app
from gan.train import train

pytest.importorskip("starlette", reason="the optional extra: pip install 'gan[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="the optional extra: pip install 'gan[serve]'")


@pytest.fixture(scope="module")
def run(shared_data_dir, tmp_path_factory, fmnist_dir):
    """A small conditional run (Trouser, Sneaker, Bag)."""
    root = tmp_path_factory.mktemp("serve")
    cfg = tiny_config(
        shared_data_dir,
        limit=512,
        epochs=2,
        lr_g=1e-3,
        lr_d=1e-3,
        conditional=True,
        classes=(1, 7, 8),
    )
    train(cfg, root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def url(run):
    """The app behind a real uvicorn server on a free port of 127.0.0.1, in a thread."""
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(make_app(run, max_count=16), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def get(url: str, method: str = "GET") -> tuple[int, dict, bytes]:
    """(status, headers, body) of one real HTTP request; 4xx/5xx are answers, not exceptions."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_health_says_what_is_served(url):
    status, headers, body = get(f"{url}/health")
    info = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert info["status"] == "ok" and info["conditional"] and info["max_count"] == 16
    assert info["classes"] == {"0": "Trouser", "1": "Sneaker", "2": "Bag"}


def test_png_is_the_image_gan_generate_writes(url, run, tmp_path):
    status, headers, body = get(f"{url}/generate?seed=3&class=Bag")
    assert status == 200 and headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(body)).size == (28, 28)
    out = generate_images(run, 1, tmp_path / "gen", seed=3, klass="Bag")
    assert body == (out / "Bag" / "000000.png").read_bytes()
    assert get(f"{url}/generate?seed=3&class=2")[2] == body  # by index, same image
    assert get(f"{url}/generate?seed=4&class=2")[2] != body


def test_count_gives_a_grid_with_classes_in_turn(url):
    status, headers, body = get(f"{url}/generate?seed=1&count=5&nrow=3&scale=2")
    assert status == 200 and headers["x-classes"] == "0,1,2,0,1"
    assert Image.open(io.BytesIO(body)).size == (3 * 58 + 2, 2 * 58 + 2)


@pytest.mark.parametrize(
    "query, status, message",
    [
        ("generate?count=17", 400, "out of range"),
        ("generate?count=0", 400, "out of range"),
        ("generate?seed=abc", 400, "not an integer"),
        ("generate?seed=1.5", 400, "not an integer"),
        ("generate?seed=-1", 400, "out of range"),
        ("generate?class=Coat", 400, "2 (Bag)"),
        ("generate?class=7", 400, "not one this generator was trained on"),
        ("generate?n=4", 400, "unknown parameter"),
        ("generate?scale=100", 400, "out of range"),
        ("nope", 404, "/generate"),
    ],
)
def test_bad_requests_get_json_4xx_and_the_server_stays_up(url, query, status, message):
    code, headers, body = get(f"{url}/{query}")
    assert code == status and headers["content-type"] == "application/json"
    assert message in json.loads(body)["error"]
    assert get(f"{url}/health")[0] == 200


def test_wrong_method_and_concurrent_requests(url):
    assert get(f"{url}/generate", method="POST")[0] == 405
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda s: get(f"{url}/generate?seed={s}&count=4"), range(12)))
    assert [a[0] for a in answers] == [200] * 12
    assert len({a[2] for a in answers}) == 12  # twelve seeds, twelve different grids


def hide(monkeypatch, package: str) -> None:
    """Make `import package` (and its submodules) raise ImportError, as if not installed."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


def test_missing_extra_is_a_clear_error(run, monkeypatch, capsys):
    hide(monkeypatch, "starlette")
    with pytest.raises(GanError, match=r"pip install 'gan\[serve\]'"):
        make_app(run)
    hide(monkeypatch, "uvicorn")
    assert main(["serve", str(run)]) == 2
    assert "pip install 'gan[serve]'" in capsys.readouterr().err


def test_busy_port_is_a_clear_error():
    sock = listen("127.0.0.1", 0)
    try:
        with pytest.raises(GanError, match="pick another --port"):
            listen("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()
