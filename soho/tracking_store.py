"""The MLflow tracking store a stage logs to: checked at the start, its failures one line, its orphans failed.

Why a module of its own: with MLflow's defaults a dead store cost minutes before a traceback.
An http URI nobody listens on retried for 252 s (7 retries, backoff factor 2, 120 s timeout);
a SQLite file MLflow cannot write retried for 107 s (``mlflow/store/db/utils.py``:
``create_sqlalchemy_engine_with_retry``, no setting) and the traceback did not name the file.
Here the HTTP retries are bounded with MLflow's own settings, SQLite's file is checked
before MLflow opens it, and a failure becomes :class:`TrackingError`, one line naming the
URI. Runs whose process died (``kill -9``) stay RUNNING in MLflow; :func:`fail_orphaned_runs`
marks them FAILED when their stage starts again, knowing them by the process tags.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URI = "sqlite:///mlflow.db"
# MLflow's own HTTP settings, set only where the user has not: two tries of at most 5 s of
# socket wait each, so a dead server is reported at once (refused) or within 10 s (no answer).
# The run's metrics do not need more: soho.tracking_buffer keeps retrying them itself.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
PROCESS_TAGS = ("process.host", "process.pid_namespace", "process.pid", "process.started")


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written; the message names its URI."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


def shown_uri(uri: str) -> str:
    """``uri`` without a password, fit for an error line."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def bound_http_retries() -> None:
    """MLflow's HTTP retry and timeout settings (:data:`HTTP_DEFAULTS`); the user's own values win."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # a line per retry; the failure is one line


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store (``None`` for other stores and in-memory ones)."""
    if uri.partition(":")[0].partition("+")[0] != "sqlite":  # sqlite: or sqlite+pysqlite:
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database) if database and database != ":memory:" else None


def check_sqlite_writable(uri: str) -> None:
    """Refuse a SQLite store that cannot be written, before MLflow retries opening it for minutes.

    SQLite writes its journal beside the file, so the folder must be writable too; a store
    not yet created needs its nearest existing folder writable (MLflow creates the rest).
    """
    path = sqlite_path(uri)
    if path is None:
        return
    path = path.absolute()
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        why = f"{path} is read-only"
    elif not os.access(folder, os.W_OK | os.X_OK):
        why = f"folder {folder} is read-only" + (" (SQLite writes its journal there)" if path.exists() else "")
    else:
        return
    raise TrackingError(f"tracking store {shown_uri(uri)}: cannot write: {why}")


def store_failure(err: BaseException) -> str | None:
    """Why the store failed, if ``err`` is MLflow failing to reach or write its store.

    A network error counts only when MLflow raised it (an ``MlflowException`` in the chain):
    a download's own connection error is the download's. Other errors (a bad metric key,
    a bug) give ``None`` and keep their traceback.
    """
    import requests
    import sqlalchemy.exc
    import urllib3.exceptions
    from mlflow.exceptions import MlflowException

    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for found in chain:
        if isinstance(found, sqlite3.OperationalError | sqlalchemy.exc.OperationalError):
            return str(getattr(found, "orig", None) or found).splitlines()[0]
    if not any(isinstance(found, MlflowException) for found in chain):
        return None
    for found in chain:  # urllib3 says it best: "Failed to establish a new connection: [Errno 111] ..."
        if isinstance(found, urllib3.exceptions.MaxRetryError) and found.reason is not None:
            return _short(str(found.reason))
    for found in chain:
        if isinstance(found, requests.ConnectionError | requests.Timeout | requests.exceptions.RetryError):
            return _short(str(found))
    return None


def _short(message: str) -> str:
    """urllib3's message without its pool prefix: ``Failed to establish a new connection: [Errno 111] ...``."""
    message = re.sub(r"^\w*Connection(Pool)?\([^)]*\):\s*", "", message.strip())
    return message.removeprefix("Max retries exceeded with url: ")


@contextlib.contextmanager
def store_errors(uri: str, doing: str) -> Iterator[None]:
    """Turn the store being unreachable or unwritable into one :class:`TrackingError` line."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as err:
        reason = store_failure(err)
        if reason is None:
            raise
        if uri.startswith(("http:", "https:")):
            knobs = ", ".join(
                f"{name}={os.environ.get(name)}"
                for name in HTTP_DEFAULTS
                if name != "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
            )
            reason += f" ({knobs})"
        raise TrackingError(f"tracking store {shown_uri(uri)}: {doing} failed: {reason}") from err


def open_store(experiment: str) -> str:
    """Point MLflow at the store and get (or create) ``experiment``: the early probe every stage makes.

    Returns the experiment id. Fails within the HTTP bounds above, as a :class:`TrackingError`.
    """
    import mlflow

    bound_http_retries()
    uri = tracking_uri()
    check_sqlite_writable(uri)
    mlflow.set_tracking_uri(uri)
    with store_errors(uri, f"opening experiment {experiment!r}"):
        return mlflow.set_experiment(experiment).experiment_id


def pid_namespace() -> str:
    """Where a pid names one process: this boot of the kernel and this pid namespace (a container has its own).

    Why: two containers can share a host name and a tracking server, and a pid of one is
    never visible in the other, so "no such process" means gone only within the namespace.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # not Linux: the host name alone
        return ""


def process_tags() -> dict[str, str]:
    """Who runs this run: host, pid namespace, pid and the process's start time (a pid can be reused)."""
    import psutil

    return {
        "process.host": socket.gethostname(),
        "process.pid_namespace": pid_namespace(),
        "process.pid": str(os.getpid()),
        "process.started": f"{psutil.Process().create_time():.3f}",
    }


def process_gone(tags: Mapping[str, str]) -> bool:
    """True when the run's process (:func:`process_tags`) has surely ended: same host and pid namespace, pid gone.

    A run without the tags (logged before they existed) or from another host or container
    is never called gone: it may belong to a stage running right now.
    """
    import psutil

    here = process_tags()
    if any(tags.get(name) != here[name] for name in ("process.host", "process.pid_namespace")):
        return False
    try:
        process = psutil.Process(int(tags["process.pid"]))
        started, status = process.create_time(), process.status()
    except (psutil.NoSuchProcess, KeyError, ValueError):
        return "process.pid" in tags
    return status == psutil.STATUS_ZOMBIE or abs(started - float(tags.get("process.started", "nan"))) > 1.0


def fail_orphaned_runs(experiment_id: str, stage: str, task: str | None) -> list[str]:
    """Mark FAILED the RUNNING runs of this stage (and task) whose process is gone; returns their ids."""
    import mlflow

    client = mlflow.MlflowClient()
    found = client.search_runs(
        [experiment_id], f"attributes.status = 'RUNNING' and tags.stage = '{stage}'", max_results=1000
    )
    orphans = [run for run in found if run.data.tags.get("task") == task and process_gone(run.data.tags)]
    for run in orphans:
        tags = run.data.tags
        client.set_tag(
            run.info.run_id, "failure", f"process {tags['process.pid']} on {tags['process.host']} ended mid-run"
        )
        client.set_terminated(run.info.run_id, "FAILED")
    return [run.info.run_id for run in orphans]
