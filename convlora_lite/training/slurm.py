"""A SLURM job array for a grid (``convlora reproduce --emit-slurm FILE``): array task ``K`` of ``N`` runs
``convlora reproduce ... --shard K/N`` (K from ``$SLURM_ARRAY_TASK_ID``), the shards of
:mod:`convlora_lite.training.sweep`.

A task is resumable as the grid is: ``reproduce`` resumes every run of its shard (a finished run is skipped, an
interrupted one continues from its last completed epoch), so a task requeued (``--requeue``: a preempted or failed
node) or submitted again (``sbatch --array=K FILE``) continues where it stopped, appending to its own log
(``--open-mode=append``, one file per array task). Every argument of the command is quoted for the shell
(:func:`shlex.quote`); the values of the ``#SBATCH`` lines, which no shell reads, are checked instead.
"""
from __future__ import annotations

import math
import re
import shlex
import sys
from pathlib import Path
from typing import Optional

from convlora_lite.errors import ConfigError
from convlora_lite.io import atomic_write
from convlora_lite.progress import HEADLESS_ENV

#: the default time limit of a task: its estimate times this, plus :data:`TIME_EXTRA_S` (start-up, the
#: checkpoint's and the data's downloads, a slower host than the estimate's).
TIME_MARGIN = 1.5
TIME_EXTRA_S = 30 * 60
#: that margin, as the command line and the script's header say it.
MARGIN_TEXT = f"x {TIME_MARGIN:g} + {TIME_EXTRA_S // 60} min"
_TIME = re.compile(r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$")
_GPUS = re.compile(r"^(?:([A-Za-z0-9_.-]+):)?([1-9]\d*)$")
#: what a ``#SBATCH`` value may hold (no shell reads it: nothing to quote, nothing to split).
_SBATCH_VALUES = {"partition": re.compile(r"^[A-Za-z0-9_.,-]+$"), "mem": re.compile(r"^[1-9]\d*[KMGT]?$"),
                  "log folder": re.compile(r"^[A-Za-z0-9_./+@:=-]+$")}


def time_limit(seconds: float) -> str:
    """``seconds`` (rounded up to whole minutes) as SLURM's ``--time``: ``HH:MM:SS``, or ``D-HH:MM:SS`` from a day."""
    minutes = max(1, math.ceil(seconds / 60))
    days, minutes = divmod(minutes, 24 * 60)
    text = f"{minutes // 60:02d}:{minutes % 60:02d}:00"
    return f"{days}-{text}" if days else text


def default_time_limit(estimated_s: float) -> str:
    """The time limit of a task estimated at ``estimated_s``: x :data:`TIME_MARGIN` + :data:`TIME_EXTRA_S`."""
    return time_limit(estimated_s * TIME_MARGIN + TIME_EXTRA_S)


def check_time(text: str) -> str:
    """``--slurm-time`` as given, when SLURM reads it as ``[D-]HH:MM:SS``; a :class:`ConfigError` otherwise."""
    if not _TIME.match(text):
        raise ConfigError(f"--slurm-time {text!r}: write HH:MM:SS or D-HH:MM:SS, e.g. 12:00:00 or 2-00:00:00.")
    return text


def parse_gpus(text: str) -> tuple[str, int]:
    """``--slurm-gpus`` (``N`` or ``TYPE:N``) -> (the ``--gres=gpu:`` value, N)."""
    match = _GPUS.match(text)
    if not match:
        raise ConfigError(f"--slurm-gpus {text!r}: give the GPUs per task as N or TYPE:N, e.g. 1 or a100:1.")
    return text, int(match.group(2))


def _checked(what: str, value: str) -> str:
    """``value`` for an ``#SBATCH`` line about ``what``, when it holds only what such a line can hold."""
    if not _SBATCH_VALUES[what].match(value):
        fix = "write the script into a folder whose path has none" if what == "log folder" else "use a plain name"
        raise ConfigError(f"the SLURM {what} {value!r} has a character an #SBATCH line cannot hold (a space, a quote, "
                          f"%, ...): {fix}.")
    return value


def task_command(reproduce_args: list[str], gpus: int) -> list[str]:
    """The command an array task runs, without its ``--shard``: this Python's ``convlora reproduce``, launched
    data parallel over ``gpus`` processes (``torch.distributed.run``) when there are several."""
    launcher = [sys.executable, "-m", "convlora_lite"]
    if gpus > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                    "-m", "convlora_lite"]
    return [*launcher, "reproduce", *reproduce_args]


def sbatch_script(reproduce_args: list[str], shards: int, *, job_name: str, log_dir: Path, workdir: Path, time: str,
                  gpus: str = "1", cpus: int = 1, partition: Optional[str] = None, mem: Optional[str] = None,
                  comments: tuple = ()) -> str:
    """The sbatch script of a grid dealt over ``shards`` array tasks: ``reproduce_args`` are ``convlora reproduce``'s
    options (without ``--shard``); ``log_dir`` gets one log per task (``%x_%A_%a.out``, it must exist when the job
    starts); the task runs in ``workdir`` (where relative paths of the options point); ``comments`` head the file."""
    gres, count = parse_gpus(gpus)
    if shards < 1:
        raise ConfigError(f"--slurm-shards {shards}: need at least one array task.")
    lines = ["#!/bin/bash", *(f"# {line}" for line in comments),
             f"#SBATCH --job-name={re.sub(r'[^A-Za-z0-9_.-]', '_', job_name) or 'convlora'}",
             f"#SBATCH --array=0-{shards - 1}",
             f"#SBATCH --output={_checked('log folder', str(log_dir))}/%x_%A_%a.out",
             "#SBATCH --open-mode=append", "#SBATCH --requeue", f"#SBATCH --time={check_time(time)}",
             f"#SBATCH --gres=gpu:{gres}", f"#SBATCH --cpus-per-task={cpus}"]
    if partition:
        lines.append(f"#SBATCH --partition={_checked('partition', partition)}")
    if mem:
        lines.append(f"#SBATCH --mem={_checked('mem', mem)}")
    command = " ".join(shlex.quote(arg) for arg in task_command(reproduce_args, count))
    lines += ["set -euo pipefail",
              ': "${SLURM_ARRAY_TASK_ID:?is unset: submit this job array with sbatch, or set it to K to run task K}"',
              f"cd {shlex.quote(str(workdir))}", f"export {HEADLESS_ENV}=1 PYTHONUNBUFFERED=1",
              f'exec {command} --shard "${{SLURM_ARRAY_TASK_ID}}/{shards}"']
    return "\n".join(lines) + "\n"


def write_script(path, text: str) -> Path:
    """Write the script to ``path`` atomically, executable."""
    def write(tmp: Path) -> None:
        tmp.write_text(text)
        tmp.chmod(0o755)
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--emit-slurm {path} is a folder; give the script's file name, e.g. {path / 'grid.sbatch'}.")
    atomic_write(path, write)
    return path
