"""Start the MLflow UI on loopback and look at it in headless Chromium.

Why: the UI is how users compare runs; a test that only queried the tracking API
would not notice a store the UI cannot render. Used by the UI test and by
``scripts/mlflow_screenshot.py`` (the README's screenshot).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM_FLAGS = (  # as root, offline: no sandbox, no background traffic to Google
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(store_uri: str, port: int, artifacts: Path | None = None) -> subprocess.Popen:
    """``mlflow ui`` (the tracking server) on 127.0.0.1:``port`` for ``store_uri``, in its own process group.

    Its own group so that :func:`kill` takes the server's workers with it, as a crash would.
    """
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store_uri]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if artifacts is not None:
        command += ["--artifacts-destination", str(artifacts)]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_ready(
    server: subprocess.Popen, url: str, timeout_s: float = 120.0, probe: str = "/health", name: str = "mlflow ui"
) -> None:
    """Poll ``url + probe`` until it answers 200; fail early, with its stderr, if the server exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"{name} exited with {server.returncode}: {server.stderr.read()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}{probe}", timeout=2) as response:
            if response.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not answer on {url} within {timeout_s:.0f} s")
        time.sleep(0.5)


def kill(server: subprocess.Popen) -> None:
    """SIGKILL the server and its workers (its process group), as a crash or ``kill -9`` would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=20)


@contextlib.contextmanager
def serve(store_uri: str, port: int | None = None, timeout_s: float = 120.0) -> Iterator[str]:
    """``mlflow ui`` on 127.0.0.1 for ``store_uri``; yields its base URL; stops it on exit."""
    port = port or free_port()
    server = start(store_uri, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, url, timeout_s)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill(server)


def render(url: str, screenshot: Path | None = None, budget_ms: int = 20000, size: str = "1400,1000") -> str:
    """The page's DOM after its scripts ran (and optionally a PNG of it), via headless Chromium."""
    browser = chromium()
    if browser is None:
        raise FileNotFoundError("chromium not found: install Debian's `chromium` package (scripts/bootstrap.sh --dev)")
    with contextlib.ExitStack() as stack:
        import tempfile

        profile = stack.enter_context(tempfile.TemporaryDirectory())
        base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}"]
        base.append(f"--virtual-time-budget={budget_ms}")
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180)
        if dom.returncode != 0:
            raise RuntimeError(f"chromium failed ({dom.returncode}): {dom.stderr[-2000:]}")
        if screenshot is not None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            shot = subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
            if shot.returncode != 0 or not Path(screenshot).exists():
                raise RuntimeError(f"chromium screenshot failed ({shot.returncode}): {shot.stderr[-2000:]!r}")
        return dom.stdout


def run_page(base_url: str, experiment_id: str, run_id: str) -> str:
    return f"{base_url}/#/experiments/{experiment_id}/runs/{run_id}"
