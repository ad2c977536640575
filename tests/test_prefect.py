"""A real Prefect server on 127.0.0.1: a stage's flow run, its parameters and artifacts are recorded."""

import base64
import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

from pipeline.tracking import inline_image_markdown
from tests.conftest import edit_params, run


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
    """A stage alone, then the pipeline flow twice (one server for both, as a researcher's would be): plainly,
    with the classifier trained on two processes that relay to its flow run, then on a local Dask cluster."""
    url, env = prefect_api
    env = {**env, "PREFECT_API_URL": url}
    run([sys.executable, "-m", "stages.prepare_data"], project, env=env)
    (stage_run,) = flow_runs(url, "prepare_data")
    assert stage_run["state"]["type"] == "COMPLETED"
    assert stage_run["parameters"]["data"]["synthetic"]["num_train"] == 24
    assert stage_run["parameters"]["cam_method"] == "cam" and "stage:prepare_data" in stage_run["tags"]
    artifacts = artifacts_of(url, stage_run["id"])
    markdown = [a for a in artifacts if a["key"] == "dataset-cam-resnet"]
    assert markdown and "| train | 24 |" in markdown[0]["data"]
    logs = httpx.post(f"{url}/logs/filter", json={"logs": {"flow_run_id": {"any_": [stage_run["id"]]}}}).json()
    assert any("## Dataset" in entry["message"] for entry in logs)
    progress = [a for a in artifacts if a["type"] == "progress"]
    assert progress and all(a["data"] == 100.0 for a in progress)

    edit_params(project, lambda p: p["execution"]["training"].update(processes=2))  # its processes relay to it
    run([sys.executable, "-m", "flows.pipeline", "prepare_data", "train_classifier"], project, env=env)
    (pipeline_run,) = flow_runs(url, "wsss-pipeline")
    assert pipeline_run["state"]["type"] == "COMPLETED"
    table = [a for a in artifacts_of(url, pipeline_run["id"]) if a["key"] == "pipeline-run"]
    assert "| prepare_data | ran |" in table[0]["data"] and "| train_classifier | ran |" in table[0]["data"]
    (training,) = flow_runs(url, "train_classifier")
    assert training["state"]["type"] == "COMPLETED"
    artifacts = {a["key"]: a for a in artifacts_of(url, training["id"])}
    assert artifacts["train-classifier-metrics-cam-resnet"]["type"] == "table"  # per epoch, while training
    progress = artifacts["train-classifier-progress-cam-resnet"]["description"]
    assert progress.startswith("train_classifier: 3/3 batches · ") and " · elapsed 0:00:" in progress
    assert "classifier-cam-resnet" in artifacts  # the stage's report, from rank 0
    logs = httpx.post(f"{url}/logs/filter", json={"logs": {"flow_run_id": {"any_": [training["id"]]}}}).json()
    messages = [entry["message"] for entry in logs]
    for rank in (0, 1):  # two processes (execution.training.processes): each one's lines, tagged, in one run
        assert f"[rank {rank}] train_classifier: rank {rank} of 2 processes on cpu" in messages
    assert_chunked_stage_is_nested_and_watched(project, url, env, pipeline_run["id"])


def test_images_are_inlined_downscaled(tmp_path: Path) -> None:
    Image.new("RGB", (1920, 400), (200, 10, 10)).save(tmp_path / "grid.png")
    markdown = inline_image_markdown("overlay val", tmp_path / "grid.png")
    assert markdown.startswith("## overlay val\n\n![overlay val](data:image/png;base64,")
    data = base64.b64decode(markdown.split("base64,")[1].split(")")[0])
    assert Image.open(io.BytesIO(data)).size == (960, 200)


def assert_chunked_stage_is_nested_and_watched(project: Path, url: str, env: dict, earlier_run: str) -> None:
    """``flows.pipeline sam_masks`` on a local Dask cluster with one worker more than the cores (a warning):
    the stage run is nested under and tagged with the pipeline run, its chunks are task runs, its progress
    artifact moves while it runs, the warning reaches its log, the terminal has no HTTP lines."""
    workers = (os.cpu_count() or 1) + 1
    edit_params(project, lambda p: p.update(execution={"runner": "local", "workers": workers, "chunk_size": 2}))
    edit_params(project, lambda p: p["proposals"]["superpixels"].update(min_area=9))  # the runner alone reruns nothing
    env = {**env, "PREFECT_API_URL": url, "WSSS_PROGRESS_SECONDS": "0"}
    seen: set[float] = set()
    done = threading.Event()

    def watch_progress() -> None:  # the artifact's values while the stage runs
        while not done.is_set():
            for artifact in httpx.post(f"{url}/artifacts/filter", json={"artifacts": {"key": {"any_": [
                    "sam-masks-progress-cam-resnet"]}}}).json():  # fmt: skip
                seen.add(artifact["data"])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_progress)
    watcher.start()
    try:
        result = run([sys.executable, "-m", "flows.pipeline", "sam_masks"], project, env=env)
    finally:
        done.set()
        watcher.join()
    assert "HTTP Request" not in result.stdout + result.stderr
    (pipeline_run,) = [other for other in flow_runs(url, "wsss-pipeline") if other["id"] != earlier_run]
    (stage_run,) = [run for run in flow_runs(url, "sam_masks") if f"pipeline-run:{pipeline_run['id']}" in run["tags"]]
    assert stage_run["state"]["type"] == "COMPLETED"
    tags = set(stage_run["tags"])
    assert {"stage:sam_masks", "proposals.method=superpixels"} <= tags
    assert any(tag.startswith("dvc-stage-hash:") for tag in tags) and any(tag.startswith("commit:") for tag in tags)
    parent = httpx.get(f"{url}/task_runs/{stage_run['parent_task_run_id']}").json()
    assert parent["flow_run_id"] == pipeline_run["id"] and parent["name"].startswith("dvc repro sam_masks")
    assert stage_run["parameters"]["proposals_method"] == "superpixels"
    assert stage_run["parameters"]["proposals"]["splits"] == ["train", "val"]

    chunks = httpx.post(f"{url}/task_runs/filter", json={"task_runs": {"flow_run_id": {"any_": [stage_run["id"]]}}})
    names = sorted(chunk["name"] for chunk in chunks.json())
    assert len(names) == 16 and all(re.match(r"sam_masks chunk \d+/16", name) for name in names)
    assert all(chunk["state"]["type"] == "COMPLETED" for chunk in chunks.json())
    assert len(seen) >= 2 and 100.0 in seen  # updated during the stage, not only at its end
    (progress,) = [a for a in artifacts_of(url, stage_run["id"]) if a["key"] == "sam-masks-progress-cam-resnet"]
    assert progress["description"].startswith("sam_masks: 32/32 images · ")
    logs = httpx.post(f"{url}/logs/filter", json={"logs": {"flow_run_id": {"any_": [stage_run["id"]]}}}).json()
    assert any(f"execution.workers is {workers}" in entry["message"] and "UserWarning" in entry["message"]
               for entry in logs)  # fmt: skip
    assert not any(" images on tcp://" in entry["message"] for entry in logs)  # chunk accounts: debug level


PLANTED_KEY = "sk-planted-NEVER-WRITTEN-31337"


def test_expected_failures_and_secrets_under_prefect(project: Path, prefect_api, tmp_path: Path) -> None:
    """An expected failure prints the same one line as without Prefect, and its flow run fails with it; an API
    key the LLM server echoes in a 401 is written nowhere: not on the terminal, in the repository, `.dvc/`, the
    DVC cache and run-cache, the LLM cache or the Prefect database, after a failing and a succeeding run."""
    from pipeline.voc import VOC_CLASSES
    from tests.test_vocab import ChatServer

    url, env = prefect_api
    env = {**env, "PREFECT_API_URL": url, "OPENAI_API_KEY": PLANTED_KEY}
    edit_params(project, lambda p: p["data"].update(source="voc", voc={**p["data"]["voc"], "root": "no/such/root"}))
    result = run([sys.executable, "-m", "stages.prepare_data"], project, env=env, check=False)
    line = "prepare_data: error: " + str((project / "no/such/root").resolve()) + ": VOC root not found"
    assert result.returncode == 1 and line in result.stderr and "Traceback" not in result.stderr
    (failed,) = flow_runs(url, "prepare_data")
    assert failed["state"]["type"] == "FAILED" and "VOC root not found" in failed["state"]["message"]
    plain = run([sys.executable, "-m", "stages.prepare_data"], project, env={**env, "PREFECT_API_URL": ""}, check=False)
    assert plain.returncode == 1 and line in plain.stderr

    edit_params(project, lambda p: (p["data"].update(source="synthetic"), p["vocab"].update(provider="openai")))
    echo = {"error": {"message": f"Incorrect API key provided: {PLANTED_KEY}", "type": "invalid_request_error"}}
    outputs = []
    with ChatServer([(401, echo)]) as server:
        edit_params(project, lambda p: p["vocab"]["openai"].update(base_url=server.url, max_retries=0, timeout=5.0))
        result = dvc_with(project, env, "repro", "vocab")
        outputs.append(result.stdout + result.stderr)
        assert result.returncode != 0 and "vocab: error: " in result.stderr
        assert "Incorrect API key provided: ***" in result.stderr
    clusters = ("ok", {"clusters": {"everything": list(VOC_CLASSES)}})
    script = [("ok", {"synonyms": {cls: [f"a kind of {cls}"] for cls in VOC_CLASSES}}), clusters, clusters]
    with ChatServer(script) as server:
        edit_params(project, lambda p: p["vocab"]["openai"].update(base_url=server.url))
        result = dvc_with(project, env, "repro", "vocab")
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == 0, result.stderr
        assert server.requests[0]["authorization"] == f"Bearer {PLANTED_KEY}"  # it was sent, as it must be
    states = sorted(r["state"]["type"] for r in flow_runs(url, "vocab"))
    assert states == ["COMPLETED", "FAILED"] and "Incorrect API key provided: ***" in stored_messages(url, "vocab")
    assert not any(PLANTED_KEY in text for text in outputs)
    places = [project, Path(env["PREFECT_HOME"])]
    holding = [str(path) for place in places for path in place.rglob("*")
               if path.is_file() and PLANTED_KEY.encode() in path.read_bytes()]  # fmt: skip
    assert holding == []
    assert (project / ".dvc/cache").is_dir() and list((project / ".cache/llm").glob("*.json"))  # the places exist


def stored_messages(url: str, flow_name: str) -> str:
    """Every state message and log line of the flow's runs, joined (what the Prefect database holds)."""
    runs = flow_runs(url, flow_name)
    ids = [r["id"] for r in runs]
    logs = httpx.post(f"{url}/logs/filter", json={"logs": {"flow_run_id": {"any_": ids}}}).json()
    return "\n".join([*(r["state"]["message"] or "" for r in runs), *(entry["message"] for entry in logs)])


def dvc_with(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return run([str(Path(sys.executable).parent / "dvc"), *args], project, env=env, check=False)
