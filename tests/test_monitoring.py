"""Monitoring never stops a run; runs are named and tagged so they tell themselves apart; the live curves."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import dvc, edit_params, free_port, run
from tests.test_prefect import artifacts_of, flow_runs

TRAINED = ("model.pt", "loss.csv", "metrics.json")


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def start_server(home: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """A Prefect server on a free port of 127.0.0.1, in its own process group (killed with it)."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "PREFECT_HOME": str(home)}, stdout=(home.parent / "server.log").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise AssertionError(f"Prefect server did not start:\n{(home.parent / 'server.log').read_text()}")


def test_a_server_killed_mid_training_leaves_the_stage_to_finish_with_the_same_outputs(
    reproduced_project: Path, tmp_path: Path
) -> None:
    """train_classifier under Prefect; the server is SIGKILLed once the first epoch's table is in: the stage
    warns once, completes with exit 0, and writes the bytes a run without Prefect writes (model, loss history,
    metrics, live curves)."""
    project = reproduced_project  # its inputs reproduced: only the classifier reruns
    edit_params(project, lambda p: p["cam"]["cam"]["training"].update(epochs=5))
    dvc(project, "repro", "train_classifier")
    plain = tree_bytes(project / "artifacts/classifier")
    assert {*TRAINED, "live/plots/metrics/train/loss.tsv", "live/plots/metrics/val/mAP.tsv"} <= set(plain)

    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    server, url = start_server(tmp_path / "prefect-home", env)
    killed = threading.Event()

    def kill_after_first_epoch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed.is_set():
            try:
                keys = [a["key"] for a in httpx.post(f"{url}/artifacts/filter", json={}, timeout=2).json()]
            except httpx.HTTPError:
                keys = []
            if any(key and key.startswith("train-classifier-metrics") for key in keys):
                os.killpg(server.pid, signal.SIGKILL)
                killed.set()
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_after_first_epoch)
    watcher.start()
    try:
        stage_env = {**env, "PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path / "prefect-home"),
                     "PREFECT_CLIENT_MAX_RETRIES": "0",
                     "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}  # fmt: skip
        result = run([sys.executable, "-m", "stages.train_classifier"], project, env=stage_env, check=False)
    finally:
        killed.set()
        watcher.join()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Prefect stopped answering") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "train_classifier: epoch 5/5" in result.stderr  # the terminal went on
    assert tree_bytes(project / "artifacts/classifier") == plain


def test_an_unreachable_server_at_the_start_is_one_line_and_the_stage_runs(project: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    result = run([sys.executable, "-m", "stages.prepare_data"], project, env=env)
    lines = [line for line in result.stderr.splitlines() if "Prefect" in line]
    assert len(lines) == 1 and "running without monitoring" in lines[0] and "make prefect-server" in lines[0]
    assert "Traceback" not in result.stderr and (project / "artifacts/dataset/manifest.json").is_file()


def test_runs_are_named_tagged_and_grouped_under_their_dvc_invocation(project: Path, prefect_api) -> None:
    """Plain ``dvc exp run``: each stage's flow run is named stage / method / backbone / experiment, its varying
    tags come first, the commit is marked dirty (the experiment's params differ from HEAD), and the stages
    of one invocation are task runs of one ``wsss-pipeline`` run; artifact keys name the method. (The
    training table's key and type: test_prefect.py.)"""
    url, env = prefect_api
    env = {**env, "PREFECT_API_URL": url}
    result = dvc(project, "exp", "run", "-n", "tiny-usage", "-S", "cam.method=usage", "-S", "cam.usage.backbone=resnet",
                 "prepare_data", env=env)  # fmt: skip
    assert "Prefect" not in result.stderr, result.stderr
    (stage_run,) = flow_runs(url, "prepare_data")
    assert stage_run["name"] == "prepare_data / usage / resnet / tiny-usage"
    assert stage_run["tags"][:3] == ["experiment:tiny-usage", "cam.method=usage", "cam.backbone=resnet"]
    assert any(tag.startswith("commit:") and tag.endswith("+dirty") for tag in stage_run["tags"])
    (group,) = flow_runs(url, "wsss-pipeline")
    assert group["name"].startswith("dvc exp run") and group["state"]["type"] == "COMPLETED"
    parents = {}
    for name in ("input_files", "prepare_data"):
        (run_of_stage,) = flow_runs(url, name)
        parents[name] = httpx.get(f"{url}/task_runs/{run_of_stage['parent_task_run_id']}").json()
    assert {parent["flow_run_id"] for parent in parents.values()} == {group["id"]}
    assert parents["prepare_data"]["name"] == "dvc repro prepare_data"
    keys = {artifact["key"] for artifact in artifacts_of(url, stage_run["id"])}
    assert {"dataset-usage-resnet", "synthetic-train-progress-usage-resnet"} <= keys


@pytest.mark.parametrize("stage", ["train_segmenter", "train_segmenter_fullsup", "train_classifier"])
def test_every_training_stage_writes_its_live_curves(reproduced_project: Path, stage: str) -> None:
    """The DVCLive folder of each training stage of the default DAG: per-step terms, learning rate and gradient
    norm; per-epoch means and validation figures (IRN's, CLIP's and the first phase's: their own tests)."""
    from pipeline import layout

    folder = {"train_segmenter": layout.SEGMENTER, "train_segmenter_fullsup": layout.SEGMENTER_FULLSUP,
              "train_classifier": layout.CLASSIFIER}[stage]  # fmt: skip
    metrics = reproduced_project / folder / "live/plots/metrics"
    names = {str(path.relative_to(metrics)) for path in metrics.rglob("*.tsv")}
    assert {"train/loss.tsv", "train/grad_norm.tsv", "train_epoch/loss.tsv", "epoch.tsv"} <= names
    assert any(name.startswith("train/lr/") for name in names)
    validation = {"train_segmenter": "val/mIoU.tsv", "train_segmenter_fullsup": "val/mIoU.tsv",
                  "train_classifier": "val/mAP.tsv"}[stage]  # fmt: skip
    assert validation in names
    rows = (metrics / "train/loss.tsv").read_text().splitlines()
    assert rows[0] == "step\tloss" and len(rows) > 2


def test_dvc_plots_show_renders_offline(reproduced_project: Path, tmp_path: Path) -> None:
    """The page loads nothing from a network: Vega, Vega-Lite and vega-embed are inlined (.dvc/plots.html)."""
    dvc(reproduced_project, "plots", "show", "-o", str(tmp_path / "plots"))
    page = (tmp_path / "plots/index.html").read_text()
    assert "cdn.jsdelivr" not in page and 'src="http' not in page and 'href="http' not in page
    assert "vegaEmbed" in page and "train/grad_norm" in page


@pytest.mark.parametrize("stage", ["train_segmenter_fullsup", "train_classifier"])
def test_validation_while_training_never_changes_what_is_trained(project: Path, stage: str) -> None:
    """The per-epoch validation (and the segmenter's prediction images) run between epochs in eval mode: the
    weights and the loss terms are those of a run without them (USAGE: its EMA teacher too)."""
    folder = project / ("artifacts/segmenter_fullsup" if stage == "train_segmenter_fullsup" else "artifacts/classifier")

    def settings(p: dict, images: int) -> None:
        p["monitoring"].update(validation_images=images, images_every=1 if images else 0, system=False)
        p["segmenter"].update(epochs=2)
        p["cam"]["method"] = "usage"
        p["cam"]["usage"]["training"].update(epochs=2)

    edit_params(project, lambda p: settings(p, 0))
    dvc(project, "repro", "prepare_data")
    run([sys.executable, "-m", f"stages.{stage}"], project)
    without = (folder / "model.pt").read_bytes(), (folder / "loss.csv").read_text().splitlines()
    assert not list((folder / "live").rglob("val/*"))
    edit_params(project, lambda p: settings(p, 6))
    run([sys.executable, "-m", f"stages.{stage}"], project)
    assert (folder / "model.pt").read_bytes() == without[0]
    header, *rows = (folder / "loss.csv").read_text().splitlines()
    assert header.startswith(without[1][0] + ",val_") and len(rows) == 2
    assert [row.split(",")[: len(without[1][0].split(","))] for row in rows] == [r.split(",") for r in without[1][1:]]
    if stage == "train_segmenter_fullsup":
        images = sorted(p.name for p in (folder / "live/plots/images/val").glob("*.png"))
        assert images == ["epoch-001.png", "epoch-002.png"]
