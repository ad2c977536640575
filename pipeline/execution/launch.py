"""Starting a training stage's data-parallel processes, and relaying what they report to the stage's run.

With ``execution.training.processes`` above 1 the stage that DVC or ``flows.pipeline`` started does not train
itself: it starts that many processes running its own command line, which join one ``torch.distributed``
process group (:mod:`pipeline.distributed`), and waits for them. On this machine it starts them itself, with a
rendezvous file (nothing listens on a network port) and gloo on the loopback interface; with a ``launcher``
command prefix (``srun …``, ``srun … torchrun … --no-python``) that command starts them, on other machines too,
with ``MASTER_ADDR`` (this machine's name unless set) and a free ``MASTER_PORT`` for the rendezvous.

Each process's output comes back here: every line, tagged ``[rank r]``, to this stage's terminal and, in a flow
run, its Prefect run log; rank 0's progress bars, epoch tables, images and reports become this run's artifacts
(the processes themselves never talk to Prefect: :func:`pipeline.tracking.relay`). When a process fails or is
killed, the stage stops the others and fails naming it; the last epoch's checkpoint stays, and a rerun, on any
number of processes, resumes from it.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from pipeline.execution.params import TrainingExecutionParams
from pipeline.execution.world import RELAY_ENV, STORE_ENV, WORKER_ENV
from pipeline.tracking import RELAY_MARK, MetricsTable, ProgressBar, debug, image_artifact, info, report

STOP_GRACE_SECONDS = 10.0  # how long the other processes get to end after one failed, before they are killed


class TrainingProcessesFailed(RuntimeError):
    """A training process exited non-zero or was killed (the stage's one error line)."""


def free_port() -> int:
    """A TCP port free on this machine now (for a rendezvous the launcher's command starts)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def worker_command() -> list[str]:
    """The stage's own command line (``python -m stages.<name> --params …``), run by every process."""
    return [sys.executable, *sys.orig_argv[1:]]


def start_training_processes(name: str, training: TrainingExecutionParams) -> None:
    """Run the stage ``name`` on ``training.processes`` data-parallel processes and wait for them, relaying
    their output and monitoring; raise :class:`TrainingProcessesFailed` naming the first that failed."""
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}  # they relay instead
    env.update({WORKER_ENV: "1", RELAY_ENV: "1", "PYTHONUNBUFFERED": "1"})
    with tempfile.TemporaryDirectory(prefix=f"{name}-rendezvous-") as rendezvous:
        if training.launcher:
            command = [*shlex.split(os.path.expandvars(training.launcher)), *worker_command()]
            env.setdefault("MASTER_ADDR", socket.getfqdn())
            env.setdefault("MASTER_PORT", str(free_port()))
            info(f"{name}: starting {training.processes} training processes with `{shlex.join(command)}`")
            try:
                processes = {None: subprocess.Popen(command, env=env, **_PIPED)}
            except FileNotFoundError:
                raise ValueError(f"execution.training.launcher: {command[0]!r} is not a command here") from None
        else:
            info(f"{name}: starting {training.processes} training processes on this machine")
            local = {**env, STORE_ENV: str(Path(rendezvous) / "store"), "WORLD_SIZE": str(training.processes),
                     "LOCAL_WORLD_SIZE": str(training.processes)}  # fmt: skip
            local.setdefault("GLOO_SOCKET_IFNAME", _loopback_interface())
            processes = {rank: subprocess.Popen(worker_command(), env={**local, "RANK": str(rank),
                                                                       "LOCAL_RANK": str(rank)}, **_PIPED)
                         for rank in range(training.processes)}  # fmt: skip
        _supervise(name, processes)


_PIPED: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "bufsize": 1}


def _loopback_interface() -> str:
    """The name of this machine's loopback interface (gloo's pairs then connect over it only)."""
    names = [name for _, name in socket.if_nameindex()]
    return next((name for name in names if name.startswith("lo")), "lo")


def _supervise(name: str, processes: dict[int | None, subprocess.Popen]) -> None:
    """Relay the processes' lines (in this thread: Prefect's run context is this thread's) until all ended;
    stop the others when one fails."""
    lines: queue.Queue[tuple[int | None, str | None]] = queue.Queue()
    readers = [threading.Thread(target=_read_lines, args=(rank, process.stdout, lines), daemon=True)
               for rank, process in processes.items()]  # fmt: skip
    for reader in readers:
        reader.start()
    relay, open_streams, failed, stopping_since = _Relay(), len(readers), None, None
    while open_streams or any(process.poll() is None for process in processes.values()):
        try:
            rank, line = lines.get(timeout=0.2)
            if line is None:
                open_streams -= 1
            else:
                relay.line(rank, line)
        except queue.Empty:
            pass
        if failed is None:  # the first to end badly; of several at once, one a signal killed (the others saw it)
            ended = [(rank, p.returncode) for rank, p in processes.items() if p.poll() not in (None, 0)]
            failed = min(ended, key=lambda item: item[1] >= 0) if ended else None
        if failed is not None and stopping_since is None:
            stopping_since = time.monotonic()
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
        if stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_SECONDS:
            for process in processes.values():
                if process.poll() is None:
                    process.kill()
    relay.close()
    if failed is not None:
        rank, code = failed
        who = f"training process of rank {rank}" if rank is not None else "training launcher"
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise TrainingProcessesFailed(f"the {who} {how}; the others were stopped. The last finished epoch's "
                                      f"checkpoint stays: rerun to resume from it (on any number of processes)")


def _read_lines(rank: int | None, stream: IO[str], lines: queue.Queue) -> None:
    for line in stream:
        lines.put((rank, line.rstrip("\n")))
    lines.put((rank, None))


class _Relay:
    """Replays the processes' relayed monitoring in this process (the stage's flow run, when there is one)."""

    def __init__(self) -> None:
        self.bars: dict[str, ProgressBar] = {}
        self.tables: dict[str, MetricsTable] = {}

    def line(self, rank: int | None, line: str) -> None:
        if not line.startswith(RELAY_MARK):
            if line.strip():
                info(f"[rank {rank}] {line}" if rank is not None else line)
            return
        event = json.loads(line[len(RELAY_MARK) :])
        kind, rank = event.pop("event"), event.pop("rank")
        if kind in ("info", "debug"):
            (info if kind == "info" else debug)(f"[rank {rank}] {event['message']}")
        elif kind == "bar":
            self._bar(event)
        elif kind == "table":
            self.tables.setdefault(event["title"], MetricsTable(event["title"])).update(event["rows"])
        elif kind == "report":
            report(event["title"], event["rows"], event["notes"])
        elif kind == "image":
            image_artifact(event["title"], Path(event["png"]))

    def _bar(self, event: dict[str, Any]) -> None:
        key = event["id"]
        if "total" in event:
            self.bars[key] = ProgressBar(event["total"], event["desc"], event["unit"])
        elif key in self.bars and event.get("done"):
            self.bars.pop(key).close()
        elif key in self.bars:
            self.bars[key].advance(event["count"])

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
