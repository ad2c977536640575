"""A stand-in for SLURM's ``srun --ntasks=N command …`` on this machine: N copies of the command, each with
``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID`` as srun sets them; its exit code is the first
non-zero one of theirs. Used as ``execution.training.launcher`` by tests/test_distributed.py."""

import os
import subprocess
import sys


def main(arguments: list[str]) -> int:
    tasks = int(arguments[0].removeprefix("--ntasks="))
    env = {**os.environ, "SLURM_NTASKS": str(tasks)}
    processes = [subprocess.Popen(arguments[1:], env={**env, "SLURM_PROCID": str(task), "SLURM_LOCALID": str(task)})
                 for task in range(tasks)]  # fmt: skip
    codes = [process.wait() for process in processes]
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
