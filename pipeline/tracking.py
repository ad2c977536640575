"""Progress, logs and report artifacts: a terminal bar always, Prefect artifacts inside a flow run.

Nothing here talks to Prefect unless a flow run is active, so stages run without any server or network.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from pipeline import redaction

T = TypeVar("T")
log = logging.getLogger("pipeline")
PROGRESS_SECONDS_ENV = "WSSS_PROGRESS_SECONDS"  # how often Prefect progress artifacts are updated (default 2 s)


def in_prefect_run() -> bool:
    """Whether a Prefect flow or task run is active here (never imports Prefect when nothing else has)."""
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def info(message: str) -> None:
    """Log to the terminal and, inside a flow run, to the Prefect run log."""
    if in_prefect_run():
        from prefect import get_run_logger

        get_run_logger().info(message)
    else:
        log.info(message)


class ProgressBar:
    """A tqdm bar advanced by counts; inside a flow run also a Prefect progress artifact whose description
    gives the count, the rate and the time left, updated at most every ``every`` seconds (default: the
    ``WSSS_PROGRESS_SECONDS`` variable, else 2) and at the end."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", every: float | None = None) -> None:
        every = float(os.environ.get(PROGRESS_SECONDS_ENV, "2")) if every is None else every
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.done, self.start, self.last = 0, time.monotonic(), 0.0
        self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
        self.artifact_id = None
        if in_prefect_run() and total:
            from prefect.artifacts import create_progress_artifact

            self.artifact_id = create_progress_artifact(
                progress=0.0, key=artifact_key(f"{desc}-progress"), description=self.describe()
            )

    def describe(self) -> str:
        """``desc: done/total unit · rate/s · ETA m:ss``."""
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 and self.total else None
        eta = f"{int(left // 60)}:{int(left % 60):02d}" if left is not None else "?"
        return f"{self.desc}: {self.done}/{self.total} {self.unit} · {rate:.2f}/s · ETA {eta}"

    def advance(self, count: int = 1) -> None:
        self.done += count
        self.bar.update(count)
        finished = self.total is not None and self.done >= self.total
        if self.artifact_id is not None and (time.monotonic() - self.last > self.every or finished):
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(artifact_id=self.artifact_id, progress=100.0 * min(self.done / self.total, 1.0),
                                     description=self.describe())  # fmt: skip
            self.last = time.monotonic()

    def __enter__(self) -> ProgressBar:
        return self

    def close(self) -> None:
        self.bar.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Iterate with a :class:`ProgressBar`."""
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    with ProgressBar(total, desc, unit) as bar:
        for item in items:
            yield item
            bar.advance()


def metrics_table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    """Inside a flow run, publish ``rows`` (per-epoch metrics so far) as a table artifact, a new version each
    call, so the run shows the curve while it trains."""
    if in_prefect_run() and rows:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(table=[dict(row) for row in rows], key=artifact_key(title), description=title)


def inline_image_markdown(title: str, png: Path, width: int = 960) -> str:
    """Markdown showing a PNG inlined as a data URI, downscaled to at most ``width`` pixels."""
    import base64
    import io

    from PIL import Image

    with Image.open(png) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    return f"## {title}\n\n![{title}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})\n"


def image_artifact(title: str, png: Path) -> None:
    """Inside a flow run, show a PNG (an overlay grid, a plot) as a markdown artifact, so the run page shows it
    without a file server."""
    if in_prefect_run():
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown=inline_image_markdown(title, png), key=artifact_key(title),
                                 description=title)  # fmt: skip


def report(title: str, rows: Sequence[dict[str, Any]], notes: str = "") -> str:
    """Render rows as a markdown table; print it, and publish it as a Prefect artifact in a flow run."""
    if rows:
        header = list(rows[0])
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(k)) for k in header) + " |")
        table = "\n".join(lines)
    else:
        table = "(no rows)"
    markdown = f"## {title}\n\n{table}\n" + (f"\n{notes}\n" if notes else "")
    info(markdown)
    if in_prefect_run():
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown=markdown, key=artifact_key(title), description=title)
    return markdown


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


PARENT_TASK_RUN_ENV = "WSSS_PREFECT_PARENT_TASK_RUN"  # set by flows.pipeline for the stage it launches
PIPELINE_RUN_ENV = "WSSS_PREFECT_PIPELINE_RUN"
DVC_HASH_ENV = "WSSS_DVC_STAGE_HASH"


def _terminal_logging() -> None:
    """``pipeline`` messages on stderr; the root logger is left alone, so httpx's per-request INFO lines (Prefect's
    API calls) stay out of the terminal."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


@contextmanager
def forward_warnings() -> Iterator[None]:
    """Inside a Prefect run, send each warning to the run's log as well as to the terminal."""
    if not in_prefect_run():
        yield
        return
    from prefect import get_run_logger

    shown = warnings.showwarning
    run_logger = get_run_logger()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        run_logger.warning(f"{category.__name__}: {message} ({filename}:{lineno})")
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def git_commit() -> str | None:
    """HEAD's commit (``+dirty`` with uncommitted changes to tracked files), or None outside a git checkout."""
    import subprocess

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return None
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], capture_output=True).returncode != 0
    return head.stdout.strip() + ("+dirty" if dirty else "")


def run_tags(name: str, choices: dict[str, str]) -> list[str]:
    """Tags of a stage's flow run: the stage, the commit, the pipeline run and DVC run-cache key it belongs to
    (from flows.pipeline), and every resolved method choice (``cam.method=pole``), so runs can be filtered."""
    commit = git_commit()
    tags = [f"stage:{name}", *([f"commit:{commit[:12]}"] if commit else [])]
    if os.environ.get(PIPELINE_RUN_ENV):
        tags.append(f"pipeline-run:{os.environ[PIPELINE_RUN_ENV]}")
    if os.environ.get(DVC_HASH_ENV):
        tags.append(f"dvc-stage-hash:{os.environ[DVC_HASH_ENV][:16]}")
    return tags + [f"{key}={value}" for key, value in choices.items()]


EXPECTED_FAILURES = (ValueError, OSError, RuntimeError)  # OSError: missing files, permissions, a full disk


def run_stage(
    name: str, body: Callable[[], Any], parameters: dict[str, Any], choices: dict[str, str] | None = None,
    task_runner: Any = None,
) -> int:  # fmt: skip
    """Run a stage body: as a Prefect flow when PREFECT_API_URL is set, else plainly. Return an exit code.

    The flow run gets :func:`run_tags` and, as parameters, the stage's params sections and ``choices`` (the
    run's method choices, flat: ``cam_method``), and is nested under the pipeline's task that launched it, if any;
    ``task_runner`` (a per-image stage's Dask runner) runs its chunk tasks. Expected failures (bad params, bad
    data, missing weights, unreadable or unwritable files, a diverged loss) print one clear line naming the file
    or key and exit non-zero, with or without Prefect (where the flow run is marked failed with that line, no
    traceback). No secret reaches the terminal, a log or Prefect (pipeline/redaction.py).
    """
    redaction.install()
    _terminal_logging()
    choices = choices or {}
    try:
        if os.environ.get("PREFECT_API_URL"):
            flat = {key.replace(".", "_"): value for key, value in choices.items()}  # cam_method: pole
            _run_as_flow(name, body, {**flat, **parameters}, run_tags(name, choices), task_runner)
        else:
            body()
    except EXPECTED_FAILURES as error:
        print(f"{name}: error: {_error_message(error)}", file=sys.stderr)
        return 1
    return 0


def _run_as_flow(name: str, body: Callable[[], Any], parameters: dict[str, Any], tags: list[str], runner: Any) -> None:
    import inspect
    from uuid import UUID

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    def stage_flow(**parameters: Any) -> Any:
        from prefect.states import Failed

        with forward_warnings():
            try:
                return body()
            except EXPECTED_FAILURES as error:  # the run fails with the line, not a logged traceback
                return Failed(message=_error_message(error))
            except Exception as error:  # unexpected: Prefect keeps the traceback; its message stored redacted
                error.args = tuple(redaction.redact(a) if isinstance(a, str) else a for a in error.args)
                raise

    # one named parameter per section and choice, so the UI lists each on its own row
    stage_flow.__signature__ = inspect.Signature(
        [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY) for key in parameters]
    )
    options = {"task_runner": runner} if runner is not None else {}
    stage = flow(name=name, validate_parameters=False, log_prints=True, **options)(stage_flow)
    parent = os.environ.get(PARENT_TASK_RUN_ENV)
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(stage, parameters=parameters, tags=tags,
                                          parent_task_run_id=UUID(parent) if parent else None)  # fmt: skip
    state = run_flow(stage, flow_run=flow_run, parameters=parameters, return_type="state")
    if state.is_failed():
        raise RuntimeError(state.message or f"flow run {flow_run.id} failed")  # already the one line to print


def _error_message(error: BaseException) -> str:
    """The error's message, redacted; an OSError whose text does not name its file gets the file appended."""
    text = str(error)
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text}: {error.filename}"
    return redaction.redact(text)
