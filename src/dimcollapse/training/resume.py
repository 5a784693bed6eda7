"""What ``--resume`` continues with: the checkpoint's own config.

A resumed run must be the run that was started. Settings that do not change what is trained (paths,
threads, logging, progress bar, the time cap, the final evaluation) may differ and are taken from the
new config; any other difference (lr, seed, schedule, architecture, data, objective, ...) is refused
with one line naming the keys. The learning rate can be changed on purpose with ``override_lr``
(``--resume --override-lr LR``); the new value is recorded in config.yaml and metrics.json.
"""

from __future__ import annotations

from typing import Any

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.training.config import RunConfig, clip, from_dict, to_dict

RUNTIME_KEYS = (
    "name",
    "data.root",
    "data.num_workers",
    "data.pin_memory",
    "data.persistent_workers",
    "data.prefetch_factor",
    "trainer.num_threads",
    "trainer.progress_bar",
    "trainer.tensorboard",
    "trainer.log_every",
    "trainer.checkpoint_every",
    "optim.max_time_minutes",
)
RUNTIME_PREFIXES = ("eval.",)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def is_runtime_key(key: str) -> bool:
    """True for settings a resumed run may change (they do not change what is trained)."""
    return key in RUNTIME_KEYS or key.startswith(RUNTIME_PREFIXES)


def changed_keys(stored: RunConfig, given: RunConfig) -> list[tuple[str, Any, Any]]:
    """(key, checkpoint value, new value) for every setting that differs."""
    a, b = _flatten(to_dict(stored)), _flatten(to_dict(given))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def stored_config(checkpoint: dict[str, Any], source: str) -> RunConfig:
    """The RunConfig saved in a checkpoint's hyper-parameters."""
    hp = checkpoint.get("hyper_parameters") or {}
    if not isinstance(hp, dict) or "config" not in hp or "data_info" not in hp:
        raise InputError(
            f"checkpoint '{source}' holds no dimcollapse config; it was not written by dimcollapse train."
        )
    try:
        return from_dict(hp["config"])
    except ConfigError as e:
        raise InputError(f"checkpoint '{source}' holds an invalid config ({e}); start a fresh run.") from None


def resume_config(
    stored: RunConfig, given: RunConfig, override_lr: float | None, source: str, auto: bool = False
) -> RunConfig:
    """The config of the resumed run: ``stored`` with the runtime settings of ``given`` (and the lr override).

    Raises ConfigError listing the keys that would change the run (``auto``: the run folder holds an
    interrupted run that ``train`` would resume without --resume).
    """
    changes = [c for c in changed_keys(stored, given) if not is_runtime_key(c[0])]
    if override_lr is not None:
        changes = [c for c in changes if c[0] != "optim.lr"]
    if changes:
        listing = ", ".join(f"{k} {clip(old, 30)} -> {clip(new, 30)}" for k, old, new in changes[:6])
        more = f" (+{len(changes) - 6} more)" if len(changes) > 6 else ""
        if auto:
            raise ConfigError(
                f"the --out folder holds an interrupted run ('{source}') of another config: the given config "
                f"changes {listing}{more}. To resume that run, give its own config (config.yaml beside "
                "checkpoints/); to train this config, choose another --out."
            )
        raise ConfigError(
            f"--resume continues the run saved in '{source}' with its own config, but the given config "
            f"changes {listing}{more}. Drop these changes (resume with the same config and overrides), "
            "use --override-lr LR to change only the learning rate, or start a fresh run in another --out."
        )
    merged = to_dict(stored)
    updates = {k: v for k, _, v in changed_keys(stored, given) if is_runtime_key(k)}
    if override_lr is not None:
        updates["optim.lr"] = float(override_lr)
    for key, value in updates.items():
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return from_dict(merged)
