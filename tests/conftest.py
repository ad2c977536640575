"""Shared fixtures: tiny params and throw-away copies of the project as DVC repositories."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from filelock import FileLock

from pipeline.schema import read_yaml

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["dvc.yaml", "pipeline", "stages", "flows", "prompts", "presets", "pyproject.toml"]
TINY_OVERRIDES = read_yaml((REPO / "presets/smoke.yaml").read_text())  # the tiny run, as a user tries it


def merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def without_step_floors(tree: dict) -> dict:
    """``tree`` with every ``min_steps`` 0: tiny runs train the epochs they set."""
    return {key: without_step_floors(value) if isinstance(value, dict) else 0 if key == "min_steps" else value
            for key, value in tree.items()}  # fmt: skip


def tiny_params(**overrides: dict) -> dict:
    """params.yaml of the project with the tiny test sizes, no step floors (and any further overrides)."""
    base = without_step_floors(yaml.safe_load((REPO / "params.yaml").read_text()))
    return merge(merge(base, TINY_OVERRIDES), overrides)


def project_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONHASHSEED="0", HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1",
               DO_NOT_TRACK="1")  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env or project_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def write_params(project: Path, params: dict) -> None:
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def edit_params(project: Path, change) -> None:
    """Apply ``change`` to the project's params.yaml in place."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    change(params)
    write_params(project, params)


def make_project(root: Path) -> Path:
    """A copy of the pipeline in a fresh git + DVC repository with tiny params, at ``root``."""
    root.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    write_params(root, tiny_params())
    dvc = str(Path(sys.executable).parent / "dvc")
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    run([dvc, "init", "-q"], root)
    shutil.copy2(REPO / ".dvcignore", root / ".dvcignore")  # bytecode written by the stages is not a source
    run([dvc, "config", "core.analytics", "false"], root)
    run([dvc, "config", "core.check_update", "false"], root)
    shutil.copy2(REPO / ".dvc/plots.html", root / ".dvc/plots.html")  # dvc plots show renders offline
    run([dvc, "config", "plots.html_template", "plots.html"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "init"], root)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the pipeline in a fresh git + DVC repository with tiny params."""
    return make_project(tmp_path / "project")


@pytest.fixture(scope="session")
def reproduced_template(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> tuple[Path, str]:
    """One tiny project with the whole default DAG reproduced, and that first `dvc repro`'s output: built once
    per test session, by whichever xdist worker asks first (the other waits on the lock)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base  # the session's folder, common to its workers
    template, log = shared / "reproduced" / "project", shared / "reproduced.log"
    with FileLock(str(shared / "reproduced.lock")):
        if not log.is_file():
            make_project(template)
            log.write_text(dvc(template, "repro").stdout)
    return template, log.read_text()


@pytest.fixture
def reproduced_project(reproduced_template: tuple[Path, str], tmp_path: Path) -> Path:
    """A copy of :func:`reproduced_template`'s project (DVC cache, lock and outputs included), the test's own."""
    root = tmp_path / "project"
    shutil.copytree(reproduced_template[0], root, symlinks=True)
    return root


def dvc(project: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([str(Path(sys.executable).parent / "dvc"), *args], project, check=check, env=env)


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
