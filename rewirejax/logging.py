"""Host-side logging only: progress bar, JSONL metrics, the run manifest. Never inside jit."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import subprocess
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

VERSIONED = (
  "jax",
  "jaxlib",
  "flax",
  "optax",
  "brax",
  "mujoco",
  "mujoco-mjx",
  "orbax-checkpoint",
  "chex",
  "numpy",
)


def to_jsonable(value: Any) -> Any:
  """Numbers, arrays, dataclasses and containers as plain JSON values (NaN -> None)."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return to_jsonable(dataclasses.asdict(value))
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, (np.ndarray, jax.Array)):
    return to_jsonable(np.asarray(value).tolist())
  if isinstance(value, (np.floating, float)):
    return None if not np.isfinite(value) else float(value)
  if isinstance(value, np.integer):
    return int(value)
  return value


def write_text_atomic(path: pathlib.Path, text: str) -> None:
  """Writes to a temporary file and renames it over ``path`` (no torn files)."""
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def write_json_atomic(path: pathlib.Path, payload: Any) -> None:
  write_text_atomic(path, json.dumps(to_jsonable(payload), indent=2))


def git_sha() -> str | None:
  try:
    out = subprocess.run(
      ["git", "rev-parse", "HEAD"],
      capture_output=True,
      text=True,
      check=True,
      cwd=pathlib.Path(__file__).parent,
    )
    return out.stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


def manifest(config: Any, **extra: Any) -> dict[str, Any]:
  """The run's config, library versions, git commit and devices."""
  versions = {}
  for name in VERSIONED:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {
    "config": config,
    "versions": versions,
    "git_sha": git_sha(),
    "devices": [str(d) for d in jax.devices()],
    **extra,
  }


class MetricsLog:
  """Appends one JSON object per line; on resume, drops lines past the restored point."""

  def __init__(self, path: pathlib.Path, keep_until: tuple[int, int] | None = None):
    self.path = path
    if not path.exists():
      return
    if keep_until is None:  # A fresh run starts a fresh log.
      path.unlink()
      return
    kept = []
    for line in path.read_text().splitlines():
      record = json.loads(line) if line else None
      if record is not None and (record["task_index"], record["chunk"]) <= keep_until:
        kept.append(line + "\n")
    write_text_atomic(path, "".join(kept))

  def write(self, record: dict[str, Any]) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(to_jsonable(record)) + "\n")


def progress_bar(total: int, initial: int = 0, enabled: bool = True) -> tqdm:
  return tqdm(total=total, initial=initial, disable=not enabled, unit="chunk", dynamic_ncols=True)
