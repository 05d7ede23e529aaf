"""Dead tracking stores (issue 15): fast one-line failures, training that never blocks, no run left RUNNING.

Before: an http URI nobody listens on retried for 252 s and ended in a 116-line traceback;
a read-only SQLite store retried for 107 s and the traceback did not name the file; a
server killed mid-run blocked training for 499 s on ``log_metrics``, then crashed it; runs
of killed processes stayed RUNNING forever.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soho import stage, tracking
from soho.config import Params

from ..conftest import REPO
from ..support import mlflow_ui
from ..support.processes import as_unprivileged, popen_python, python_env


@pytest.fixture(autouse=True)
def restored_environ():
    """The stage kit sets MLflow's HTTP defaults in ``os.environ`` (setdefault); undo it after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def run_probe(patch, ran: list) -> int:
    """``stage.run`` of a stage ``probe`` that opens its own run, as pretrain does; its body appends to ``ran``."""

    def body(params, args):
        with tracking.stage_run("probe", params, pipeline_id=args.kit.pipeline_id):
            ran.append(args.kit.stage)

    patch.setattr(sys, "argv", ["stages/probe.py", "--params", str(REPO / "params.yaml")])
    return stage.run("probe", body, own_runs=True)


@contextlib.contextmanager
def dead_server(kind: str):
    """An http URI on loopback that refuses connections, or accepts them and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == "silent":
            sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_an_unreachable_server_fails_the_stage_within_15_s_in_one_line_naming_it(kind, monkeypatch, capsys):
    ran = []
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "4")  # the user's own setting wins over the stage's 5 s
    with dead_server(kind) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        started = time.monotonic()
        code = run_probe(monkeypatch, ran)
        seconds = time.monotonic() - started
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not ran
    assert len(lines) == 1 and lines[0].startswith(f"error: probe: tracking store {uri}: ")
    assert lines[0].endswith("(MLFLOW_HTTP_REQUEST_MAX_RETRIES=1, MLFLOW_HTTP_REQUEST_TIMEOUT=4)")
    assert seconds < 15, f"{seconds:.1f} s to report {uri}"


PROBE_SCRIPT = """
import sys, time
from soho import stage, tracking

def body(params, args):  # opens its own run, as pretrain does
    with tracking.stage_run("probe", params, pipeline_id=args.kit.pipeline_id):
        open("body-ran", "w").close()

started = time.monotonic()
code = stage.run("probe", body, own_runs=True)
print(f"{time.monotonic() - started:.1f}")
sys.exit(code)
"""


@pytest.mark.timeout(180)
@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_a_read_only_sqlite_store_fails_in_one_line_naming_the_file(read_only, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    db = store / "mlflow.db"
    if read_only == "file":  # an existing store, the file read-only
        import mlflow

        mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
        db.chmod(0o444)
        blocked = db
    else:  # a store still to create, in a read-only folder
        store.chmod(0o555)
        blocked = store
    uri = f"sqlite:///{db}"
    env = python_env(tmp_path, MLFLOW_TRACKING_URI=uri)
    child = popen_python(
        PROBE_SCRIPT,
        "--params",
        str(REPO / "params.yaml"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=as_unprivileged(),
    )
    try:
        out, err = child.communicate(timeout=150)
    finally:
        child.kill()
        store.chmod(0o755)
    lines = err.strip().splitlines()
    assert child.returncode == 2 and not (tmp_path / "body-ran").exists()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith(f"error: probe: tracking store {uri}: cannot write: ") and str(blocked) in lines[0]
    assert float(out.split()[-1]) < 15


@pytest.fixture
def server(tmp_path):
    """A real tracking server on 127.0.0.1 over a SQLite file; ``restart`` brings it back after a kill."""

    class Server:
        store = f"sqlite:///{tmp_path / 'server.db'}"
        port = mlflow_ui.free_port()
        url = f"http://127.0.0.1:{port}"

        def restart(self) -> None:
            self.process = mlflow_ui.start(self.store, self.port, tmp_path / "artifacts")
            mlflow_ui.wait_ready(self.process, self.url)

        def kill(self) -> None:
            mlflow_ui.kill(self.process)

    found = Server()
    found.restart()
    yield found
    found.kill()


def train_loop(run, steps: range) -> float:
    """A small training loop's logging: ``on_log`` each step, as soho.train.loop calls it; returns its seconds."""
    on_log = tracking.step_logger(run)
    started = time.monotonic()
    for step in steps:
        on_log(step, {"loss": 1.0 / (step + 1), "lr": 1e-4})
        time.sleep(0.02)  # the step's compute
    return time.monotonic() - started


def steps_logged(store: str, run_id: str, key: str = "train/loss") -> list[int]:
    import mlflow

    return sorted(m.step for m in mlflow.MlflowClient(store).get_metric_history(run_id, key))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_killed_mid_run_never_blocks_the_loop_and_gets_every_step_once_back(server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    with tracking.stage_run("probe", Params(), pipeline_id="lost-and-back") as run:
        run_id = run.active_run().info.run_id
        train_loop(run, range(0, 10))
        server.kill()
        offline_s = train_loop(run, range(10, 60))
        run.log_metrics({"final/loss": 0.5})
        server.restart()
    assert offline_s < 5, f"the loop took {offline_s:.1f} s for 50 steps while the server was down"
    assert steps_logged(server.store, run_id) == list(range(60))
    assert steps_logged(server.store, run_id, "final/loss") == [0]
    import mlflow

    assert mlflow.MlflowClient(server.store).get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_that_stays_dead_fails_the_stage_in_one_line_keeping_its_outputs_and_metrics(
    server, tmp_path, monkeypatch, capsys
):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.chdir(tmp_path)
    seen: dict = {}

    def body(params, args):
        seen["run_id"] = args.kit.mlflow.active_run().info.run_id
        train_loop(args.kit.mlflow, range(0, 10))
        server.kill()
        seen["killed"] = time.monotonic()
        seen["offline_s"] = train_loop(args.kit.mlflow, range(10, 60))
        output = tmp_path / "results.json"
        output.write_text(json.dumps({"final_loss": 0.5}))
        args.kit.log_metrics("final", {"loss": 0.5})
        args.kit.log_artifact(output)

    monkeypatch.setattr(sys, "argv", ["stages/probe.py", "--params", str(REPO / "params.yaml")])
    code = stage.run("probe", body)
    after_kill_s = time.monotonic() - seen["killed"]
    err = capsys.readouterr().err.strip()
    run_id = seen["run_id"]
    unsent = Path("mlflow-unsent") / f"{run_id}.json"
    last = err.splitlines()[-1]  # before it, MLflow's and the buffer's own log lines
    assert code == 2 and "Traceback" not in err
    assert last.startswith(f"error: probe: tracking store {server.url} lost (") and str(unsent) in last
    assert seen["offline_s"] < 5 and after_kill_s < 60
    assert (tmp_path / "results.json").exists()
    kept = json.loads(unsent.read_text())
    local = sorted(step for key, _, _, step in kept["metrics"] if key == "train/loss")
    assert sorted(steps_logged(server.store, run_id) + local) == list(range(60)), "a step is lost"
    assert ["final/loss", 0.5] in [row[:2] for row in kept["metrics"]]
    assert kept["artifacts"] == [[str(tmp_path / "results.json"), None]]

    from soho import tracking_buffer

    server.restart()
    tracking_buffer.replay(unsent)
    assert steps_logged(server.store, run_id) == list(range(60)) and not unsent.exists()
    client = mlflow.MlflowClient(server.url)  # artifacts go through the server
    assert client.get_run(run_id).info.status == "FAILED"
    assert [a.path for a in client.list_artifacts(run_id)] == ["results.json"]


KILLED_SCRIPT = """
import os, signal, sys
import mlflow
from soho import tracking
from soho.config import Params
task, end = sys.argv[1:]
with tracking.stage_run("probe", Params(), task=task, pipeline_id="kill-9"):
    print(mlflow.active_run().info.run_id, flush=True)
    if end == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()  # a stage still running: it holds its run until the test closes stdin
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_left_running_by_kill_9_is_failed_when_its_stage_starts_again(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    client.create_experiment("soho-embedded")  # the tables and experiment, before three processes share them
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    env = python_env(tmp_path, MLFLOW_TRACKING_URI=uri)
    ends = {"killed": ("t", "kill"), "other_task": ("u", "kill"), "alive": ("t", "wait")}  # task, how it ends
    children = {
        name: popen_python(KILLED_SCRIPT, *args, cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for name, args in ends.items()
    }
    try:
        run_ids = {name: child.stdout.readline().strip() for name, child in children.items()}
        assert children["killed"].wait(timeout=60) == -signal.SIGKILL
        assert children["other_task"].wait(timeout=60) == -signal.SIGKILL
        with tracking.stage_run("probe", Params(), task="t", pipeline_id="next-start"):
            pass
        status = {name: client.get_run(run_id).info.status for name, run_id in run_ids.items()}
        assert status == {"killed": "FAILED", "other_task": "RUNNING", "alive": "RUNNING"}
        assert "ended mid-run" in client.get_run(run_ids["killed"]).data.tags["failure"]
        children["alive"].stdin.close()
        assert children["alive"].wait(timeout=60) == 0
        assert client.get_run(run_ids["alive"]).info.status == "FINISHED"
    finally:
        for child in children.values():
            child.kill()
            child.wait()
