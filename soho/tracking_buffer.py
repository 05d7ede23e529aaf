"""A stage's MLflow run that never blocks the stage: metrics and tags are queued and sent by one thread.

Why not MLflow's async logging (``mlflow.config.enable_async_logging``): it sends each
call from a thread pool, but a batch whose request fails is logged as an error and dropped
(``mlflow/utils/async_logging/async_logging_queue.py``), and ``end_run`` then waits for
every queued batch to fail in turn. A server that died mid-run (it blocked training for
499 s, then crashed it, losing steps) would still lose the steps logged while it was away.
Here the queue keeps what was not sent: the sender retries every few seconds, sends what
piled up once the server is back, and what is still unsent when the stage ends is written
to ``mlflow-unsent/<run_id>.json`` (:func:`replay` logs it later).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soho.io import write_text
from soho.tracking_store import TrackingError, shown_uri, store_errors, store_failure

log = logging.getLogger(__name__)
UNSENT_DIR = Path("mlflow-unsent")
MAX_ITEMS, MAX_TAGS = 1000, 100  # MLflow's limits for one log_batch request (all items; tags)


class BufferedRun:
    """What :func:`soho.tracking.stage_run` yields: the ``mlflow`` module, its run's logging calls queued.

    ``log_metric(s)`` and ``set_tag(s)`` return at once; ``log_artifact`` uploads at once
    unless the store is known lost, and is kept for the end otherwise. Everything else
    (``active_run``, ``pytorch``...) is the ``mlflow`` module itself.
    """

    def __init__(self, mlflow: Any, run_id: str, uri: str, send_every_s: float = 0.5, retry_every_s: float = 5.0):
        self._mlflow, self.run_id, self.uri = mlflow, run_id, uri
        self.client = mlflow.MlflowClient(uri)
        self._send_every_s, self._retry_every_s = send_every_s, retry_every_s
        self._lock = threading.Lock()
        self._metrics: list[Any] = []
        self._tags: dict[str, str] = {}
        self._artifacts: list[tuple[str, str | None]] = []
        self.lost: str | None = None  # why the last send failed; None while the store answers
        self._error: BaseException | None = None  # a failure that is not the store's, raised at close
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name=f"mlflow-sender-{run_id[:8]}", daemon=True)
        self._sender.start()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not set yet (or private): never look it up in the module
            raise AttributeError(name)
        return getattr(self._mlflow, name)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self._lock:
            self._metrics += [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        with self._lock:
            self._tags |= {key: str(value) for key, value in tags.items()}

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        if self.lost is None:
            try:
                self.client.log_artifact(self.run_id, local_path, artifact_path)
                return
            except Exception as err:
                if (reason := store_failure(err)) is None:
                    raise
                self.lost = reason
        self._artifacts.append((str(Path(local_path).absolute()), artifact_path))

    def _send_loop(self) -> None:
        while not self._stop.wait(self._send_every_s if self.lost is None else self._retry_every_s):
            self._send_queued()

    def _send_queued(self) -> bool:
        """Send the queue in MLflow-sized batches, oldest first; False if the store failed (the rest stays queued)."""
        from mlflow.entities import RunTag

        while True:
            with self._lock:
                tags = dict(list(self._tags.items())[:MAX_TAGS])
                metrics = self._metrics[: MAX_ITEMS - len(tags)]
            if not metrics and not tags:
                return True
            try:
                self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
            except Exception as err:
                if (reason := store_failure(err)) is None:
                    self._error = self._error or err
                else:
                    if self.lost is None:
                        log.warning("tracking store %s lost (%s): queueing metrics", shown_uri(self.uri), reason)
                    self.lost = reason
                    return False
            else:
                if self.lost is not None:
                    log.info("tracking store %s is back: sending what was queued", shown_uri(self.uri))
                self.lost = None
            with self._lock:  # sent, or refused for a reason sending again will not fix
                del self._metrics[: len(metrics)]
                for key in tags:
                    if self._tags.get(key) == tags[key]:
                        del self._tags[key]

    def close(self, status: str) -> None:
        """Stop the sender, send the rest (artifacts too), end the run; raise :class:`TrackingError` if the store is gone.

        What could not be sent is in ``mlflow-unsent/<run_id>.json``, named in the error.
        """
        self._stop.set()
        self._sender.join()
        sent = self._send_queued() and self._send_artifacts()
        try:
            self._mlflow.end_run(status if sent and self._error is None else "FAILED")
        except Exception as err:
            if (reason := store_failure(err)) is None:
                raise
            self.lost, sent = reason, False
        path = None if sent else self._write_unsent()
        if self._error is not None:
            raise self._error
        if path is not None:
            raise TrackingError(
                f"tracking store {shown_uri(self.uri)} lost ({self.lost}): run {self.run_id} is incomplete;"
                f" what it could not take is in {path} (python -m soho.tracking_buffer {path} sends it)"
            )

    def _send_artifacts(self) -> bool:
        while self._artifacts:
            local_path, artifact_path = self._artifacts[0]
            try:
                self.client.log_artifact(self.run_id, local_path, artifact_path)
            except Exception as err:
                if (reason := store_failure(err)) is None:
                    raise
                self.lost = reason
                return False
            self._artifacts.pop(0)
        return True

    def _write_unsent(self) -> Path:
        path = UNSENT_DIR / f"{self.run_id}.json"
        unsent = {
            "tracking_uri": self.uri,
            "run_id": self.run_id,
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in self._metrics],
            "tags": self._tags,
            "artifacts": self._artifacts,
        }
        write_text(path, json.dumps(unsent, indent=1))
        return path


def replay(path: Path, status: str = "FAILED") -> None:
    """Send a run's ``mlflow-unsent`` file to its store, end the run with ``status``, delete the file."""
    import mlflow
    from mlflow.entities import Metric, RunTag

    unsent = json.loads(Path(path).read_text())
    client, run_id = mlflow.MlflowClient(unsent["tracking_uri"]), unsent["run_id"]
    with store_errors(unsent["tracking_uri"], f"replaying {path}"):
        metrics = [Metric(*row) for row in unsent["metrics"]]
        tags = [RunTag(key, value) for key, value in unsent["tags"].items()]
        for start in range(0, len(tags), MAX_TAGS):
            client.log_batch(run_id, tags=tags[start : start + MAX_TAGS])
        for start in range(0, len(metrics), MAX_ITEMS):
            client.log_batch(run_id, metrics=metrics[start : start + MAX_ITEMS])
        for local_path, artifact_path in unsent["artifacts"]:
            client.log_artifact(run_id, local_path, artifact_path)
        client.set_terminated(run_id, status)
    Path(path).unlink()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in sys.argv[1:]:
        try:
            replay(Path(name))
        except TrackingError as err:
            log.error("error: %s", err)
            sys.exit(2)
        log.info("sent %s", name)
