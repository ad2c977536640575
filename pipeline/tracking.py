"""Progress, logs and report artifacts: a terminal bar always, Prefect artifacts inside a flow run.

Nothing here talks to Prefect unless a flow run is active, so stages run without any server or network.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("pipeline")


def _flow_run_active() -> bool:
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def info(message: str) -> None:
    """Log to the terminal and, inside a flow run, to the Prefect run log."""
    if _flow_run_active():
        from prefect import get_run_logger

        get_run_logger().info(message)
    else:
        log.info(message)


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate with a tqdm bar; inside a flow run also keep a Prefect progress artifact up to date."""
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    artifact_id = None
    last_update = 0.0
    if _flow_run_active() and total:
        from prefect.artifacts import create_progress_artifact

        artifact_id = create_progress_artifact(progress=0.0, key=artifact_key(f"{desc}-progress"), description=desc)
    bar = tqdm(items, total=total, desc=desc, dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    for done, item in enumerate(bar, start=1):
        yield item
        if artifact_id is not None and (time.monotonic() - last_update > 2.0 or done == total):
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(artifact_id=artifact_id, progress=100.0 * done / total)
            last_update = time.monotonic()


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
    if _flow_run_active():
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown=markdown, key=artifact_key(title), description=title)
    return markdown


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def run_stage(name: str, body: Callable[[], Any], parameters: dict[str, Any]) -> int:
    """Run a stage body: as a Prefect flow when PREFECT_API_URL is set, else plainly. Return an exit code.

    Expected failures (bad params, bad data, missing weights, unreadable or unwritable files) print one clear
    line naming the file or key and exit non-zero.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if os.environ.get("PREFECT_API_URL"):
            from prefect import flow

            def stage_flow(parameters: dict[str, Any]) -> Any:
                return body()

            flow(name=name, validate_parameters=False, log_prints=True)(stage_flow)(parameters=parameters)
        else:
            body()
    except (ValueError, OSError, RuntimeError) as error:  # OSError: missing files, permissions, a full disk
        print(f"{name}: error: {_error_message(error)}", file=sys.stderr)
        return 1
    return 0


def _error_message(error: BaseException) -> str:
    """The error's message; an OSError whose text does not name its file gets the file appended."""
    text = str(error)
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text}: {error.filename}"
    return text
