"""Running the review app: check where it may listen, say where it is, serve until Ctrl-C."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from review.app import create_app
from review.security import Guard, check_bind, is_loopback
from storage.settings import Settings


def address(host: str, port: int, token: str | None = None) -> str:
    """The address to open in a browser (with ``?token=`` when one is needed; the browser keeps it as a cookie)."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if host in ("0.0.0.0", "::"):
        name = "<this machine's name>"
    return f"http://{name}:{port}/" + (f"?token={token}" if token else "")


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8080,
    reviewer: str | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the review app on ``host:port`` until interrupted.

    Raises:
        SettingsError: ``host`` is not loopback and ``DEFECTFLOW_REVIEW_TOKEN`` is not set.
    """
    import uvicorn

    check_bind(host, settings.review_token)
    guard = Guard(token=settings.review_token, loopback=is_loopback(host))
    app = create_app(settings, guard=guard, reviewer=reviewer)
    say(f"review app on {settings.home}: open {address(host, port, settings.review_token)}")
    say("verdicts are recorded in " + str(settings.verdicts_path) + "; Ctrl-C stops the app")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def background_server(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 and a free port in a thread until the block ends; yields the base URL.

    For what needs real HTTP in one process: the tests (concurrent clients, a browser), the benchmark and the
    screenshots of docs/review.md.
    """
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the review app's server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
