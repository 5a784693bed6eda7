"""The executor block of a study (``executor:`` in the study file, ``--executor``, ``executor.key=value``).

    executor:
      name: slurm                # local (default) | slurm
      parallel: 1                # local: runs at once
      partition: gpu             # slurm: sbatch --partition
      time: 1440                 # minutes, or "HH:MM:SS" / "D-HH:MM:SS"
      account: ..., qos: ..., constraint: ...
      array_parallelism: 8       # at most this many array tasks at once (slurm_array_parallelism)
      cpus_per_task: 8
      mem_gb: 64
      signal_delay_s: 120        # SIGUSR1 this long before the time limit (preemption warning)
      sbatch: {exclusive: true}  # any other sbatch option
      setup: ["module load cuda"]  # shell lines before srun

Every key is checked before anything is written or submitted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from dimcollapse.errors import ConfigError

EXECUTORS = ("local", "slurm")
_INT_KEYS = ("parallel", "array_parallelism", "cpus_per_task", "signal_delay_s", "poll_s")
_STR_KEYS = ("partition", "account", "qos", "constraint")
KEYS = ("name", *_INT_KEYS, "time", *_STR_KEYS, "mem_gb", "sbatch", "setup", "slurm_array_parallelism")
_TIME = re.compile(r"^(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?$")


@dataclass
class ExecutorOptions:
    """A validated executor block."""

    name: str = "local"
    parallel: int = 1
    partition: str | None = None
    time_min: int = 60
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 256
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    signal_delay_s: int = 120
    poll_s: int = 2
    sbatch: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The block as written into the study folder (``launch/study.json``)."""
        data = {k: v for k, v in self.__dict__.items() if v not in (None, [], {})}
        data["time"] = data.pop("time_min")
        return data


def minutes(value: Any) -> int:
    """A time limit in minutes from minutes (int) or ``[D-]HH:MM[:SS]``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _TIME.match(str(value).strip())
    if not match:
        raise ConfigError(
            f"executor.time = {value!r} is not a time limit: give minutes (e.g. 1440) or 'D-HH:MM:SS'."
        )
    days, hours, mins, secs = (int(g) if g else 0 for g in match.groups())
    total = days * 1440 + hours * 60 + mins + (1 if secs else 0)
    if total <= 0:
        raise ConfigError(f"executor.time = {value!r} must be longer than zero.")
    return total


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"executor.{key} must be a whole number >= 1, got {value!r}.")
    return value


def parse_overrides(items: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Split ``executor.key=value`` items (values YAML-parsed) from the runs' own overrides."""
    mine: dict[str, Any] = {}
    rest: list[str] = []
    for item in items:
        key, sep, value = item.partition("=")
        if key.startswith("executor.") and sep:
            try:
                mine[key.removeprefix("executor.")] = yaml.safe_load(value) if value else ""
            except yaml.YAMLError:
                mine[key.removeprefix("executor.")] = value
        elif key == "executor" and sep:
            mine["name"] = value
        else:
            rest.append(item)
    return mine, rest


def resolve(block: Any, overrides: dict[str, Any], name: str | None, parallel: int | None) -> ExecutorOptions:
    """The study file's block < ``executor.key=value`` < ``--executor`` / ``--parallel``; validated."""
    if block is None:
        block = {}
    if isinstance(block, str):
        block = {"name": block}
    if not isinstance(block, dict):
        raise ConfigError(
            f"study key 'executor' must be a mapping like {{name: slurm, partition: gpu}}, got {block!r}."
        )
    merged = {**block, **overrides}
    if name is not None:
        merged["name"] = name
    if parallel is not None:
        merged["parallel"] = parallel
    unknown = sorted(set(merged) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown executor key(s) {unknown}; valid keys: {', '.join(KEYS[:-1])}.")
    opts = ExecutorOptions()
    opts.name = str(merged.get("name", "local"))
    if opts.name not in EXECUTORS:
        raise ConfigError(f"unknown executor '{opts.name}'. Valid executors: {', '.join(EXECUTORS)}.")
    if "slurm_array_parallelism" in merged:
        merged.setdefault("array_parallelism", merged.pop("slurm_array_parallelism"))
    for key in _INT_KEYS:
        if key in merged:
            setattr(opts, key, _positive_int(key, merged[key]))
    for key in _STR_KEYS:
        if key in merged and merged[key] is not None:
            text = str(merged[key]).strip()
            if not text or any(c in text for c in "\n\r\0"):
                raise ConfigError(f"executor.{key} = {merged[key]!r} is not a valid name.")
            setattr(opts, key, text)
    if "time" in merged:
        opts.time_min = minutes(merged["time"])
    if "mem_gb" in merged:
        mem = merged["mem_gb"]
        if not isinstance(mem, (int, float)) or isinstance(mem, bool) or not 0 < mem < 1e6:
            raise ConfigError(f"executor.mem_gb must be a number of GB > 0, got {mem!r}.")
        opts.mem_gb = float(mem)
    if merged.get("sbatch") is not None:
        if not isinstance(merged["sbatch"], dict) or not all(isinstance(k, str) for k in merged["sbatch"]):
            raise ConfigError("executor.sbatch must be a mapping of sbatch options, e.g. {exclusive: true}.")
        opts.sbatch = {k.replace("-", "_"): v for k, v in merged["sbatch"].items()}
    if merged.get("setup") is not None:
        if not isinstance(merged["setup"], list) or not all(isinstance(x, str) for x in merged["setup"]):
            raise ConfigError("executor.setup must be a list of shell lines, e.g. ['module load cuda'].")
        opts.setup = list(merged["setup"])
    if opts.name == "local" and opts.parallel < 1:
        raise ConfigError("--parallel must be >= 1.")
    return opts
