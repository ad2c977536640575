"""Live training curves with DVCLive, and a per-run table in Prefect: what a multi-hour run is doing now.

Two DVCLive logs per training stage:

* ``<out dir>/live/`` — the run's curves, a DVC output shown by ``dvc plots show`` and ``dvc exp``: per step
  each loss term, the learning rate of each parameter group and the gradient norm; per epoch the epoch's mean
  losses (``train_epoch/…``), the validation figures (``val/…``) and, every few epochs, prediction images.
  Deterministic: a rerun, or a run resumed after a kill, writes the same bytes. It is written in the
  training's work directory (beside the checkpoint, so a resumed run continues it) and copied to the output
  after every epoch, where ``dvc plots show`` and the VS Code extension read it while the run goes on.
* ``logs/<stage>/`` — the machine's figures, which no rerun repeats: samples per second and DVCLive's system
  monitor (CPU, RAM, disk, and GPU utilisation and memory when NVML finds a GPU), with timestamps. Not a DVC
  output: a stage restored from the cache does not pretend to have run.

Inside a Prefect flow run the epoch rows, with samples/s and elapsed time, are one table artifact updated in
place. Nothing here can stop a run: a logging failure warns once and the run goes on without that log.
"""

from __future__ import annotations

import csv
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.tracking import MetricsTable, clock

LIVE_DIR = "live"
SYSTEM_ROOT = Path("logs")
log = logging.getLogger("pipeline")


def _quiet_dvclive() -> None:
    """DVCLive's info lines (``Logging to experiment …``) stay out of the stage's output."""
    logging.getLogger("dvclive").setLevel(logging.WARNING)


def _gpu_figures_if_nvml_loads() -> None:
    """DVCLive samples GPUs whenever its NVML binding is installed, and logs a traceback when the driver's
    library is missing (every CPU machine): sample them only when NVML starts."""
    from dvclive import monitor_system

    try:
        monitor_system.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no GPU figures
        monitor_system.GPU_AVAILABLE = False


def empty_curves(out_dir: Path) -> None:
    """The live folder of a stage that trained nothing (a placeholder, a training-free method): empty, so
    ``dvc plots show`` draws nothing for it."""
    target = out_dir / LIVE_DIR
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)


def truncate_steps(live_dir: Path, steps: int) -> None:
    """Drop the rows of every DVCLive metric file at or after step ``steps`` (logged by an epoch that a kill
    interrupted, and that the resumed run trains again)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        with tsv.open(newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
        if not rows:
            continue
        step = rows[0].index("step")
        kept = [rows[0], *(row for row in rows[1:] if int(row[step]) < steps)]
        with tsv.open("w", newline="") as handle:
            csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(kept)


class TrainingLog:
    """The live logs of one training run: :meth:`step` after each optimiser step, :meth:`epoch` after each
    epoch, :meth:`close` at the end. ``work``: where the curves are written (the run's work directory);
    ``out``: the stage's output folder they are copied to; ``steps_done``: the steps of the checkpoint
    resumed (0: a fresh run)."""

    def __init__(self, name: str, work: Path | None, out: Path | None, steps_done: int, system: bool = True) -> None:
        self.name, self.out, self.start = name, out, time.monotonic()
        self.samples, self.samples_start = 0, time.monotonic()
        self.epoch_samples, self.epoch_start = 0, time.monotonic()  # for the epoch's samples/s in the table
        self.pending, self.failed = False, False
        self.table = MetricsTable(f"{name} metrics")
        self.rows: list[dict[str, Any]] = []
        self.global_step = steps_done
        self.curves = self._open(work / LIVE_DIR, steps_done, system=False) if work is not None else None
        self.system = self._open(SYSTEM_ROOT / name, steps_done, system=True) if system and work else None

    def _open(self, directory: Path, steps_done: int, system: bool) -> Any:
        """A DVCLive logger continuing at ``steps_done``: the curves keep nothing logged after it; the system
        log of a resumed run keeps all it had (its rows are timestamped) and continues. None if DVCLive fails."""
        try:
            from dvclive import Live

            _quiet_dvclive()
            if system:
                _gpu_figures_if_nvml_loads()
            elif steps_done:
                truncate_steps(directory, steps_done)
            live = Live(str(directory), resume=bool(steps_done), report=None, save_dvc_exp=False, dvcyaml=False)
            if system:  # sampled every 0.1 s (DVCLive's slowest; its default 0.05 s costs the training loop
                live.monitor_system(interval=0.1, num_samples=29)  # time on a busy CPU), a row every 2.9 s (30 warns)
            live.step = steps_done  # the system monitor's rows carry the training step they were sampled at
            return live
        except Exception as error:  # noqa: BLE001 - monitoring never stops a run
            log.warning(f"{self.name}: no live log in {directory} ({type(error).__name__}: {error})")
            return None

    def step(self, losses: dict[str, float], learning_rates: dict[str, float], grad_norm: float, samples: int) -> None:
        """Log one optimiser step's figures (the previous step is closed first)."""
        self._guarded(self._step, losses, learning_rates, grad_norm, samples)

    def epoch(self, epoch: int, losses: dict[str, float], validation: dict[str, float],
              images: dict[str, Any] | None = None) -> None:  # fmt: skip
        """Log an epoch's mean losses and validation figures at its last step, and ``images`` (name → PIL
        image); update the Prefect table (with the epoch's samples/s); copy the curves to the output folder."""
        self._guarded(self._epoch, epoch, losses, validation, images)

    def _guarded(self, call: Any, *args: Any) -> None:
        """Run a logging call; on a failure warn once and log nothing more: the run goes on."""
        if self.failed:
            return
        try:
            call(*args)
        except Exception as error:  # noqa: BLE001 - monitoring never stops a run
            self.failed = True
            log.warning(f"{self.name}: live logging stopped ({type(error).__name__}: {error}); training goes on")

    def _step(self, losses: dict[str, float], learning_rates: dict[str, float], grad_norm: float, samples: int) -> None:
        self.samples += samples
        self.epoch_samples += samples
        self.global_step += 1
        if self.curves is not None:
            if self.pending:  # next step; DVCLive's next_step() would also rewrite its summary: once an epoch
                self.curves.step += 1
            for key, value in losses.items():
                self.curves.log_metric(f"train/{key}", value)
            for group, value in learning_rates.items():
                self.curves.log_metric(f"train/lr/{group}", value)
            self.curves.log_metric("train/grad_norm", grad_norm)
            self.pending = True
        if self.system is not None:
            seconds = time.monotonic() - self.samples_start
            self.system.step = self.global_step
            if seconds >= 1.0:  # a rate over at least a second, not per step's noise
                self.system.log_metric("train/samples_per_s", self.samples / seconds, timestamp=True)
                self.samples, self.samples_start = 0, time.monotonic()

    def _epoch(self, epoch: int, losses: dict[str, float], validation: dict[str, float],
               images: dict[str, Any] | None) -> None:  # fmt: skip
        rate = self.epoch_samples / max(time.monotonic() - self.epoch_start, 1e-9)
        self.epoch_samples, self.epoch_start = 0, time.monotonic()
        self.rows.append({"epoch": epoch, **losses, **validation, "samples/s": round(rate, 2),
                          "elapsed": clock(time.monotonic() - self.start)})  # fmt: skip
        self.table.update(self.rows)
        if self.curves is None:
            return
        for key, value in losses.items():
            self.curves.log_metric(f"train_epoch/{key}", value)
        for key, value in validation.items():
            self.curves.log_metric(f"val/{key.removeprefix('val_')}", value)
        self.curves.log_metric("epoch", epoch)
        for name, image in (images or {}).items():
            self.curves.log_image(name, image)
        self.curves.next_step()
        self.pending = False
        self._publish()

    def _publish(self) -> None:
        if self.out is None:
            return
        if self.curves is None:  # DVCLive failed to start: the stage's output exists all the same
            empty_curves(self.out)
            return
        target = self.out / LIVE_DIR
        staging = target.with_name(f".{LIVE_DIR}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(self.curves.dir, staging, ignore=shutil.ignore_patterns("metrics.json"))  # DVCLive's
        # summary: the stage's own metrics.json has the figures, and the folder is a plots output
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)

    def close(self) -> None:
        """End the system monitor; leave the curves in the output folder."""
        if self.system is not None and self.system._system_monitor is not None:
            self.system._system_monitor.end()  # Live.end() would also try to track the folder in an experiment
        self._guarded(self._publish)
        if self.out is not None and not (self.out / LIVE_DIR).is_dir():  # logging failed: the output still exists
            empty_curves(self.out)
