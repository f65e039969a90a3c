"""Where a new adapter starts, and which rows it trains on: incremental training (DESIGN §8).

A new version either starts from the base model (a fresh LoRA) or continues from the applied
adapter's weights. Continuing is only sound when the applied adapter was trained on the same base
model (id and weights revision) with the same LoRA shape; otherwise its tensors do not fit, or fit a
different network, and the new version starts from the base — with the reason recorded, so a user
sees why a run cost the full history.

A continued version trains on the rows of the sessions its parent never saw, plus a replay sample of
older rows (a stable sample by prompt hash) so that it does not forget what it learned: the cost of
a retraining follows the new data, not the whole history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .dataset_rows import sample_rows
from .training_data import DPO, SFT

BASE, APPLIED = "base", "applied"
INIT_CHOICES = (BASE, APPLIED)
FORMATS = (SFT, DPO)
# The LoRA hyperparameters that decide the adapter's tensors: a parent with other values cannot be loaded
# as the start of this one.
LORA_SHAPE = ("rank", "alpha", "target_modules", "trainable_layers")


@dataclass(frozen=True)
class InitChoice:
    """`init_from` as it will run: `applied` names the parent version; `reason` says why."""

    init_from: str
    reason: str
    parent: str | None = None
    # Sessions the parent already trained on in this format: their rows only come back as replay.
    seen_sessions: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"init_from": self.init_from, "parent": self.parent, "reason": self.reason}


def choose_init(
    requested: str,
    parent_version: str | None,
    parent_lineage: Mapping[str, Any] | None,
    base_model: Mapping[str, str],
    lora: Mapping[str, Any],
    train_format: str,
    train_sessions: Sequence[str],
) -> InitChoice:
    """Decide where training starts. `requested` is the config's `init_from`; `parent_lineage` the
    applied version's `lineage.json` (None when nothing is applied); `base_model` `{id, revision}` of
    the model this run trains; `lora` this run's LoRA hyperparameters; `train_sessions` the dataset's
    training sessions. Falls back to `base` whenever continuing would be wrong or pointless."""
    if requested not in INIT_CHOICES:
        raise ValueError(f"init_from {requested!r}: expected one of {', '.join(INIT_CHOICES)}")
    if train_format not in FORMATS:
        raise ValueError(f"format {train_format!r}: expected one of {', '.join(FORMATS)}")
    if requested == BASE:
        return InitChoice(BASE, "init_from: base was requested")
    if parent_version is None or parent_lineage is None:
        return InitChoice(BASE, "no adapter is applied yet: training from the base model")
    parent_base = parent_lineage.get("base_model") or {}
    if (parent_base.get("id"), parent_base.get("revision")) != (base_model["id"], base_model["revision"]):
        return InitChoice(BASE, f"the base model changed since {parent_version} "
                                f"({parent_base.get('id')} @ {str(parent_base.get('revision'))[:12]} → "
                                f"{base_model['id']} @ {base_model['revision'][:12]}): its weights do not "
                                "apply, training from the base model")
    parent_config = parent_lineage.get("config") or {}
    changed = [f"{k} {parent_config.get(k)} → {lora[k]}" for k in LORA_SHAPE
               if _shape_value(parent_config.get(k)) != _shape_value(lora[k])]
    if changed:
        return InitChoice(BASE, f"the LoRA shape differs from {parent_version} ({'; '.join(changed)}): "
                                "training from the base model")
    parent_format = parent_lineage.get("format", SFT)
    seen = set(parent_lineage.get("train_sessions") or []) if parent_format == train_format else set()
    new = [s for s in train_sessions if s not in seen]
    if not new:
        return InitChoice(BASE, f"no training sessions since {parent_version} was trained: nothing new to "
                                "continue on, training from the base model on all rows")
    what = (f"{len(new)} new sessions" if seen
            else f"all {len(new)} sessions ({train_format} rows, {parent_version} was trained on {parent_format})")
    return InitChoice(APPLIED, f"continuing from the applied {parent_version} on {what}",
                      parent=parent_version, seen_sessions=tuple(sorted(seen)))


def _shape_value(value: Any) -> Any:
    """Lists and tuples of target modules compare as sets; numbers as floats (JSON keeps 32.0 as 32)."""
    if isinstance(value, (list, tuple)):
        return tuple(sorted(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


@dataclass(frozen=True)
class IncrementalRows:
    rows: list[dict[str, Any]]
    new_rows: int
    replay_rows: int


def select_training_rows(
    rows: Sequence[dict[str, Any]], seen_sessions: Sequence[str], replay_fraction: float, max_rows: int = 0,
) -> IncrementalRows:
    """The rows of sessions not in `seen_sessions`, capped at `max_rows` × (1 − `replay_fraction`)
    (spread over what they teach), plus older rows replayed so that they make up `replay_fraction`
    of the result (a stable sample by prompt hash; fewer when history has fewer). With no seen
    sessions this is the whole, capped, training set."""
    if not 0.0 <= replay_fraction < 1.0:
        raise ValueError(f"replay_fraction {replay_fraction}: expected 0 <= replay_fraction < 1")
    seen = set(seen_sessions)
    new = [r for r in rows if r["session_id"] not in seen]
    old = [r for r in rows if r["session_id"] in seen]
    if not seen:
        picked = sample_rows(new, max_rows, spread=True) if max_rows else list(new)
        return IncrementalRows(picked, len(picked), 0)
    if max_rows:
        new = sample_rows(new, max(1, math.floor(max_rows * (1 - replay_fraction))), spread=True)
    wanted = round(len(new) * replay_fraction / (1 - replay_fraction))
    replay = sample_rows(old, wanted) if wanted else []
    return IncrementalRows(new + replay, len(new), len(replay))
