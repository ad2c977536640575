"""A real Prefect server on 127.0.0.1: a stage's flow run, its parameters and artifacts are recorded."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import project_env, run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def prefect_api(tmp_path: Path):
    port = free_port()
    env = project_env()
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Prefect server did not start:\n{(tmp_path / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url, env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def flow_runs(url: str, flow_name: str) -> list[dict]:
    response = httpx.post(f"{url}/flow_runs/filter", json={"flows": {"name": {"any_": [flow_name]}}})
    response.raise_for_status()
    return response.json()


def artifacts_of(url: str, flow_run_id: str) -> list[dict]:
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    response = httpx.post(f"{url}/artifacts/filter", json=body)
    response.raise_for_status()
    return response.json()


def test_stage_and_pipeline_flow_runs_are_recorded(project: Path, prefect_api) -> None:
    url, env = prefect_api
    env = {**env, "PREFECT_API_URL": url}
    run([sys.executable, "-m", "stages.prepare_data"], project, env=env)
    (stage_run,) = flow_runs(url, "prepare_data")
    assert stage_run["state"]["type"] == "COMPLETED"
    assert stage_run["parameters"]["parameters"]["data"]["synthetic"]["num_train"] == 24
    artifacts = artifacts_of(url, stage_run["id"])
    markdown = [a for a in artifacts if a["key"] == "dataset"]
    assert markdown and "| train | 24 |" in markdown[0]["data"]
    logs = httpx.post(f"{url}/logs/filter", json={"logs": {"flow_run_id": {"any_": [stage_run["id"]]}}}).json()
    assert any("## Dataset" in entry["message"] for entry in logs)
    progress = [a for a in artifacts if a["type"] == "progress"]
    assert progress and all(a["data"] == 100.0 for a in progress)

    run([sys.executable, "-m", "flows.pipeline", "prepare_data", "train_classifier"], project, env=env)
    (pipeline_run,) = flow_runs(url, "wsss-pipeline")
    assert pipeline_run["state"]["type"] == "COMPLETED"
    table = [a for a in artifacts_of(url, pipeline_run["id"]) if a["key"] == "pipeline-run"]
    assert "| prepare_data | ran |" in table[0]["data"] and "| train_classifier | ran |" in table[0]["data"]
    assert flow_runs(url, "train_classifier")[0]["state"]["type"] == "COMPLETED"
