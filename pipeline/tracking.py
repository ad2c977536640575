"""Progress, logs and report artifacts: a terminal bar always, Prefect artifacts inside a flow run.

Nothing here talks to Prefect unless a flow run is active, so stages run without any server or network. Every
Prefect call is best-effort (:func:`best_effort`): the first one that fails (a server killed, a network gone)
warns once and turns monitoring off for the rest of the process; the stage goes on with terminal output and
writes the same bytes. A server unreachable when a stage starts is one line, and the stage runs plainly.
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
from pipeline.execution.world import RELAY_ENV, current_world

T = TypeVar("T")
log = logging.getLogger("pipeline")
PROGRESS_SECONDS_ENV = "WSSS_PROGRESS_SECONDS"  # how often Prefect progress artifacts are updated (default 2 s)
RELAY_MARK = "\x1ewsss-relay "  # starts a line of monitoring a training process relays to its stage
RELAY_SECONDS = 0.5  # how often a relayed progress bar reports its count


class _Monitoring:
    """Whether Prefect has answered every call of this process so far."""

    alive = True


def best_effort(what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``call(*args, **kwargs)`` when Prefect still answers; on any failure warn once (naming ``what``), turn
    monitoring off for the rest of the process and return None: monitoring never stops a run."""
    if not _Monitoring.alive:
        return None
    try:
        return call(*args, **kwargs)
    except Exception as error:  # a dead server, a timeout, a refused request: the run is not the monitoring
        monitoring_lost(what, error)
        return None


def monitoring_lost(what: str, error: BaseException) -> None:
    """Warn once that Prefect stopped answering, and stop every later call to it, its log shipping included."""
    if not _Monitoring.alive:
        return
    _Monitoring.alive = False
    log.warning(f"Prefect stopped answering ({what}: {type(error).__name__}: {redaction.redact(str(error))[:200]}); "
                "monitoring is off for the rest of this stage, which goes on")  # fmt: skip
    logging.raiseExceptions = False  # Prefect's log shipper reports each failed batch through this flag
    prefect_loggers = [name for name in logging.root.manager.loggerDict if name.split(".")[0] == "prefect"]
    for name in prefect_loggers:  # the engine's own account of the failed calls: the warning above said it
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL)
        for handler in list(logger.handlers):
            if type(handler).__name__ == "APILogHandler":  # stop shipping logs to the dead API
                logger.removeHandler(handler)


def relaying() -> bool:
    """Whether this process is a training process whose stage relays its monitoring (pipeline/execution/launch.py)."""
    return bool(os.environ.get(RELAY_ENV))


def relay(event: str, **fields: Any) -> None:
    """Send one monitoring event to the stage that started this process (a line on stdout); if that stage is
    gone, end this process: nobody would read its results."""
    import json

    line = RELAY_MARK + json.dumps({"event": event, "rank": current_world().rank, **fields}, default=str)
    try:
        sys.__stdout__.write(line + "\n")
        sys.__stdout__.flush()
    except BrokenPipeError:
        os._exit(1)


def in_prefect_run() -> bool:
    """Whether a Prefect flow or task run is active here and Prefect still answers (never imports Prefect when
    nothing else has)."""
    if "prefect" not in sys.modules or not _Monitoring.alive:
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class _Subject:
    """What this process's stage runs for (its CAM method, and backbone where it has a choice): part of every
    artifact key, so the versions under one key are one method's."""

    text = ""


def artifact_key(text: str) -> str:
    """``text`` and the run's subject as a Prefect artifact key (lowercase letters, digits and dashes only)."""
    key = f"{text}-{_Subject.text}" if _Subject.text else text
    return "-".join(filter(None, "".join(c if c.isalnum() else "-" for c in key.lower()).split("-")))


def info(message: str) -> None:
    """Log to the terminal and, inside a flow run, to the Prefect run log (a training process: to its stage's;
    a process other than rank 0 tags its lines with its rank)."""
    if relaying():
        relay("info", message=message)
        return
    if current_world().rank:
        message = f"[rank {current_world().rank}] {message}"
    if in_prefect_run():
        from prefect import get_run_logger

        best_effort("log", lambda: get_run_logger().info(message))
    if not in_prefect_run():  # also when that call found Prefect gone
        log.info(message)


def debug(message: str) -> None:
    """A detail (one per-image chunk's account) at debug level: in the terminal and the Prefect run log only
    when their level is lowered to DEBUG (``PREFECT_LOGGING_LEVEL=DEBUG``)."""
    if relaying():
        relay("debug", message=message)
    elif in_prefect_run():
        from prefect import get_run_logger

        best_effort("log", lambda: get_run_logger().debug(message))
    else:
        log.debug(message)


class ProgressBar:
    """A tqdm bar advanced by counts; inside a flow run also a Prefect progress artifact whose description
    gives the count, the rate and the time left, updated at most every ``every`` seconds (default: the
    ``WSSS_PROGRESS_SECONDS`` variable, else 2) and at the end. Of a data-parallel run's processes only rank 0
    shows one; a training process relays it to its stage, which shows it."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", every: float | None = None) -> None:
        every = float(os.environ.get(PROGRESS_SECONDS_ENV, "2")) if every is None else every
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.done, self.start, self.last = 0, time.monotonic(), 0.0
        self.relayed = relaying() and current_world().main
        self.relayed_count = 0
        if self.relayed:
            relay("bar", id=str(id(self)), total=total, desc=desc, unit=unit)
        self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", dynamic_ncols=True, mininterval=1.0, file=sys.stderr,
                        disable=relaying() or not current_world().main)  # fmt: skip
        self.artifact_id = None
        if in_prefect_run() and total:
            from prefect.artifacts import create_progress_artifact

            self.artifact_id = best_effort("progress artifact", create_progress_artifact, progress=0.0,
                                           key=artifact_key(f"{desc}-progress"),
                                           description=self.describe())  # fmt: skip

    def describe(self) -> str:
        """``desc: done/total unit · rate/s · elapsed h:mm:ss · ETA h:mm:ss``."""
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 and self.total else None
        eta = clock(left) if left is not None else "?"
        counts = f"{self.desc}: {self.done}/{self.total} {self.unit} · {rate:.2f}/s"
        return f"{counts} · elapsed {clock(elapsed)} · ETA {eta}"

    def advance(self, count: int = 1) -> None:
        self.done += count
        self.bar.update(count)
        finished = self.total is not None and self.done >= self.total
        if self.relayed and (time.monotonic() - self.last > RELAY_SECONDS or finished):
            relay("bar", id=str(id(self)), count=self.done - self.relayed_count)
            self.relayed_count, self.last = self.done, time.monotonic()
        if self.artifact_id is not None and in_prefect_run() and (time.monotonic() - self.last > self.every or
                                                                    finished):  # fmt: skip
            from prefect.artifacts import update_progress_artifact

            best_effort("progress artifact", update_progress_artifact, artifact_id=self.artifact_id,
                        progress=100.0 * min(self.done / self.total, 1.0), description=self.describe())  # fmt: skip
            self.last = time.monotonic()

    def __enter__(self) -> ProgressBar:
        return self

    def close(self) -> None:
        if self.relayed:
            if self.done > self.relayed_count:
                relay("bar", id=str(id(self)), count=self.done - self.relayed_count)
            relay("bar", id=str(id(self)), done=True)
            self.relayed = False
        self.bar.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


def clock(seconds: float) -> str:
    """Seconds as ``h:mm:ss``."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Iterate with a :class:`ProgressBar`."""
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    with ProgressBar(total, desc, unit) as bar:
        for item in items:
            yield item
            bar.advance()


class MetricsTable:
    """Inside a flow run, one table artifact of per-epoch rows, created at the first rows and updated in place
    after each epoch (one card per run, not one per epoch); figures rounded to 4 significant digits."""

    def __init__(self, title: str) -> None:
        self.title, self.artifact_id = title, None

    def update(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows and relaying() and current_world().main:
            relay("table", title=self.title, rows=list(rows))
        if not rows or not in_prefect_run():
            return
        table = [{key: _rounded(value) for key, value in row.items()} for row in rows]
        if self.artifact_id is None:
            from prefect.artifacts import create_table_artifact

            self.artifact_id = best_effort("table artifact", create_table_artifact, table=table,
                                           key=artifact_key(self.title), description=self.title)  # fmt: skip
            return
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactUpdate

        def update() -> None:
            with get_client(sync_client=True) as client:
                client.update_artifact(self.artifact_id, ArtifactUpdate(data=table))

        best_effort("table artifact", update)


def _rounded(value: Any) -> Any:
    return float(f"{value:.4g}") if isinstance(value, float) else value


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
    if relaying() and current_world().main:
        relay("image", title=title, png=str(Path(png).resolve()))
    elif in_prefect_run():
        from prefect.artifacts import create_markdown_artifact

        best_effort("image artifact", create_markdown_artifact, markdown=inline_image_markdown(title, png),
                    key=artifact_key(title), description=title)  # fmt: skip


def report(title: str, rows: Sequence[dict[str, Any]], notes: str = "") -> str:
    """Render rows as a markdown table; print it, and publish it as a Prefect artifact in a flow run (a training
    process: rank 0 relays it to its stage)."""
    if relaying():
        if current_world().main:
            relay("report", title=title, rows=list(rows), notes=notes)
        return ""
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

        best_effort("report artifact", create_markdown_artifact, markdown=markdown, key=artifact_key(title),
                    description=title)  # fmt: skip
    return markdown


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


PARENT_TASK_RUN_ENV = "WSSS_PREFECT_PARENT_TASK_RUN"  # set by flows.pipeline for the stage it launches
PIPELINE_RUN_ENV = "WSSS_PREFECT_PIPELINE_RUN"
DVC_HASH_ENV = "WSSS_DVC_STAGE_HASH"


class BarSafeHandler(logging.Handler):
    """Log records on stderr through tqdm's writer, so a line never glues onto a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


def _terminal_logging() -> None:
    """``pipeline`` messages on stderr; the root logger is left alone, so httpx's per-request INFO lines (Prefect's
    API calls) stay out of the terminal."""
    if not log.handlers:
        handler = BarSafeHandler()
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
        if in_prefect_run():
            best_effort("log", run_logger.warning, f"{category.__name__}: {message} ({filename}:{lineno})")
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


def experiment_name() -> str:
    """The DVC experiment a stage runs in (``dvc exp run -n …`` sets DVC_EXP_NAME), else ``workspace``."""
    return os.environ.get("DVC_EXP_NAME") or "workspace"


def run_name(name: str, choices: dict[str, str]) -> str:
    """A stage's flow-run name: stage / CAM method / backbone / experiment (``train_classifier / usage /
    resnet / compare-usage-resnet``), so runs of a comparison tell themselves apart in lists."""
    parts = [name, choices.get("cam.method"), choices.get("cam.backbone"), experiment_name()]
    return " / ".join(part for part in parts if part)


def run_tags(name: str, choices: dict[str, str]) -> list[str]:
    """Tags of a stage's flow run, those that vary between runs first (the UI shows the first few): the
    experiment, the CAM method and backbone, the other method choices (``seeds.method=sams``), then the stage,
    the commit (``+dirty`` when the working tree, params included, differs from HEAD), the pipeline run and the
    DVC run-cache key it belongs to (from flows.pipeline)."""
    first = ("cam.method", "cam.backbone")
    tags = [f"experiment:{experiment_name()}", *(f"{key}={choices[key]}" for key in first if key in choices)]
    tags += [f"{key}={value}" for key, value in choices.items() if key not in first]
    commit = git_commit()
    tags += [f"stage:{name}", *([f"commit:{commit[:12]}{'+dirty' if commit.endswith('+dirty') else ''}"]
                                if commit else [])]  # fmt: skip
    if os.environ.get(PIPELINE_RUN_ENV):
        tags.append(f"pipeline-run:{os.environ[PIPELINE_RUN_ENV]}")
    if os.environ.get(DVC_HASH_ENV):
        tags.append(f"dvc-stage-hash:{os.environ[DVC_HASH_ENV][:16]}")
    return tags


EXPECTED_FAILURES = (ValueError, OSError, RuntimeError)  # OSError: missing files, permissions, a full disk


def run_stage(
    name: str, body: Callable[[], Any], parameters: dict[str, Any], choices: dict[str, str] | None = None,
    task_runner: Any = None,
) -> int:  # fmt: skip
    """Run a stage body: as a Prefect flow when PREFECT_API_URL is set and the server answers, else plainly.
    Return an exit code.

    The flow run is named by :func:`run_name`, gets :func:`run_tags` and, as parameters, the stage's params
    sections and ``choices`` (the run's method choices, flat: ``cam_method``), and is nested under the
    pipeline's task that launched it, or else under the run of the ``dvc repro`` / ``dvc exp run`` it belongs
    to (:func:`dvc_invocation_task`); ``task_runner`` (a per-image stage's Dask runner) runs its chunk tasks.
    Prefect is best-effort: a server unreachable at the start is one line and the stage runs plainly; one that
    dies during the stage warns once and the stage finishes, with the same outputs. Expected failures (bad
    params, bad data, missing weights, unreadable or unwritable files, a diverged loss) print one clear line
    naming the file or key and exit non-zero, with or without Prefect (where the flow run is marked failed with
    that line, no traceback). No secret reaches the terminal, a log or Prefect (pipeline/redaction.py). Of the
    processes of a data-parallel training run started by torchrun, only rank 0 makes a flow run.
    """
    redaction.install()
    _terminal_logging()
    choices = choices or {}
    _Subject.text = "-".join(filter(None, [choices.get("cam.method"), choices.get("cam.backbone")]))
    try:
        if os.environ.get("PREFECT_API_URL") and current_world().main and prefect_answers(name):
            flat = {key.replace(".", "_"): value for key, value in choices.items()}  # cam_method: pole
            _run_as_flow(name, body, {**flat, **parameters}, run_name(name, choices), run_tags(name, choices),
                         task_runner)  # fmt: skip
        else:
            body()
    except EXPECTED_FAILURES as error:
        print(f"{name}: error: {_error_message(error)}", file=sys.stderr)
        return 1
    return 0


def prefect_answers(name: str) -> bool:
    """Whether the Prefect API of PREFECT_API_URL answers its health check; if not, one line on stderr saying
    how to start it or run without it (the stage then runs plainly)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    url = os.environ["PREFECT_API_URL"]
    try:  # one try: a server that is not there is not retried for a minute before the line
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}), get_client(sync_client=True) as client:
            error = client.api_healthcheck()
    except Exception as failure:  # a malformed URL, a refused connection while opening
        error = failure
    if error is None:
        return True
    _Monitoring.alive = False
    print(f"{name}: warning: no Prefect server answers at PREFECT_API_URL={redaction.redact(url)} "
          f"({type(error).__name__}); running without monitoring. Start one with `make prefect-server`, or unset "
          "PREFECT_API_URL", file=sys.stderr)  # fmt: skip
    return False


def _run_as_flow(
    name: str, body: Callable[[], Any], parameters: dict[str, Any], title: str, tags: list[str], runner: Any
) -> None:  # fmt: skip
    import inspect
    from uuid import UUID

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    outcome: dict[str, Any] = {}  # what the body did, whatever Prefect could record of it

    def stage_flow(**parameters: Any) -> Any:
        from prefect.states import Failed

        with forward_warnings():
            try:
                outcome["result"] = body()
                return outcome["result"]
            except EXPECTED_FAILURES as error:  # the run fails with the line, not a logged traceback
                outcome["error"] = error
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
    group = None if parent else best_effort("grouping under the dvc run", dvc_invocation_task, name, tags)
    parent_id = UUID(parent) if parent else (group.task_run_id if group else None)

    def create() -> Any:
        with get_client(sync_client=True) as client:
            return client.create_flow_run(stage, name=title, parameters=parameters, tags=tags,
                                          parent_task_run_id=parent_id)  # fmt: skip

    flow_run = best_effort("creating the flow run", create)
    if flow_run is None:
        body()  # Prefect went away between the health check and here
        return
    try:
        state = run_flow(stage, flow_run=flow_run, parameters=parameters, return_type="state")
    except Exception as error:
        if not outcome:  # the body itself raised (an unexpected error): Prefect has its traceback
            raise
        monitoring_lost("recording the end of the flow run", error)  # the body finished: so does the stage
        state = None
    if group is not None:
        best_effort("grouping under the dvc run", group.finish, "error" not in outcome and state is not None
                    and not state.is_failed())  # fmt: skip
    if "error" in outcome:
        raise outcome["error"]
    if state is not None and state.is_failed() and not outcome:
        raise RuntimeError(state.message or f"flow run {flow_run.id} failed")  # already the one line to print


class DvcInvocationTask:
    """This stage's task run inside the run that groups one ``dvc repro`` / ``dvc exp run`` invocation's
    stages (a ``wsss-pipeline`` flow run, created by the first stage that reports)."""

    def __init__(self, flow_run_id: Any, task_run_id: Any) -> None:
        self.flow_run_id, self.task_run_id = flow_run_id, task_run_id

    def finish(self, succeeded: bool) -> None:
        """Mark this stage's task run, and the group (its state is its latest stage's), completed or failed."""
        from prefect.client.orchestration import get_client
        from prefect.states import Completed, Failed

        with get_client(sync_client=True) as client:
            state = Completed if succeeded else Failed
            client.set_task_run_state(self.task_run_id, state(), force=True)
            client.set_flow_run_state(self.flow_run_id, state(), force=True)


def dvc_invocation() -> tuple[str, str] | None:
    """(key, command line) of the ``dvc repro`` / ``dvc exp run`` process this stage runs under, or None."""
    import hashlib

    import psutil

    try:
        for process in psutil.Process().parents():
            command = process.cmdline()
            words = [Path(word).name for word in command[:4]]
            if "dvc" in words and ("repro" in command or "exp" in command):
                key = hashlib.sha256(f"{process.pid}-{process.create_time()}".encode()).hexdigest()[:16]
                start = next(index for index, word in enumerate(command) if Path(word).name == "dvc")
                return key, " ".join(["dvc", *command[start + 1 :]])[:120]
    except psutil.Error:
        return None
    return None


def dvc_invocation_task(name: str, tags: list[str]) -> DvcInvocationTask | None:
    """A task run for this stage in the run grouping its ``dvc repro`` / ``dvc exp run`` (found by its tag,
    else created, named after the command and the experiment); None outside DVC."""
    invocation = dvc_invocation()
    if invocation is None:
        return None
    key, command = invocation
    from prefect import Flow, Task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.states import Running

    tag = f"dvc-invocation:{key}"
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])), limit=1)
        group_tags = [tag, *(t for t in tags if t.startswith(("experiment:", "commit:")))]
        group = found[0] if found else client.create_flow_run(
            Flow(lambda: None, name="wsss-pipeline"), name=f"{command} / {experiment_name()}", tags=group_tags,
            state=Running())  # fmt: skip
        client.set_flow_run_state(group.id, Running(), force=True)
        task_run = client.create_task_run(Task(lambda: None, name="dvc-repro-stage"), group.id, name,
                                          name=f"dvc repro {name}", state=Running())  # fmt: skip
    return DvcInvocationTask(group.id, task_run.id)


def _error_message(error: BaseException) -> str:
    """The error's message, redacted; an OSError whose text does not name its file gets the file appended."""
    text = str(error)
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text}: {error.filename}"
    return redaction.redact(text)
