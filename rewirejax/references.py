"""SAC-N reference returns: made by rewirejax itself, stored with the settings that made them.

Absolute returns of the paper's Brax do not carry over to today's physics, so the normaliser of
the average performance is SAC-N's own return per task, measured by ``make reproduce-brax``.
One JSON file per (scenario, backend, budget, SAC settings) under ``experiments/references/``;
normalising against a reference made at another budget, backend or SAC settings is refused.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import numpy as np

from rewirejax import logging as logs

DEFAULT_DIR = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "references"


def reference_path(
  directory: pathlib.Path, scenario: str, backend: str, budget: float, sac_settings: str = "paper"
) -> pathlib.Path:
  """``<scenario>.<backend>.budget-<budget>[.sac-<settings>].json`` (the paper's SAC settings
  carry no suffix)."""
  suffix = "" if sac_settings == "paper" else f".sac-{sac_settings}"
  name = f"{scenario.replace('/', '-')}.{backend}.budget-{budget:g}{suffix}.json"
  return pathlib.Path(directory) / name


def reference_from_result(result: dict[str, Any]) -> dict[str, Any]:
  """A reference from a SAC-N result (``results/<scenario>/sac_n.json``): per task, the mean
  over seeds of its return right after training it (``R[s, i, i]``), and the mean curves."""
  if result["method"] != "sac_n":
    raise ValueError(f"references are made by SAC-N, not {result['method']!r}.")
  returns = np.asarray(result["returns"], dtype=float)
  curves = np.asarray(result["curves"], dtype=float)
  return {
    "scenario": result["scenario"],
    "backend": result["backend"],
    "budget": result["budget"],
    "sac_settings": result.get("sac_settings", "paper"),
    "steps_per_task": result["steps_per_task"],
    "num_envs": result["config"]["sac"]["num_envs"],
    "num_eval_envs": result["config"]["num_eval_envs"],
    "tasks": result["task_names"],
    "seeds": result["seeds"],
    "final_returns": np.mean(np.diagonal(returns, axis1=1, axis2=2), axis=0),
    "final_returns_std": np.std(np.diagonal(returns, axis1=1, axis2=2), axis=0),
    "curves": np.mean(curves, axis=0) if curves.size else [],
    "curve_steps": result["curve_steps"],
    "versions": result.get("versions"),
    "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
  }


def write_reference(directory: pathlib.Path, reference: dict[str, Any]) -> pathlib.Path:
  path = reference_path(
    directory,
    reference["scenario"],
    reference["backend"],
    reference["budget"],
    reference.get("sac_settings", "paper"),
  )
  path.parent.mkdir(parents=True, exist_ok=True)
  logs.write_json_atomic(path, reference)
  return path


def load_reference(
  directory: pathlib.Path, scenario: str, backend: str, budget: float, sac_settings: str = "paper"
) -> dict[str, Any]:
  """The reference of ``scenario`` made at exactly this ``backend``, ``budget`` and
  ``sac_settings``.

  Raises:
    ValueError: none was made with these settings (the message lists the ones that exist).
  """
  path = reference_path(directory, scenario, backend, budget, sac_settings)
  if not path.exists():
    others = sorted(
      p.name for p in pathlib.Path(directory).glob(f"{scenario.replace('/', '-')}.*.json")
    )
    raise ValueError(
      f"No SAC-N reference for {scenario} at backend={backend}, budget={budget:g}, "
      f"SAC settings {sac_settings} in {directory}; normalising by one made at other settings "
      f"would be wrong. Existing references for this scenario: {others or 'none'}. Run `make "
      f"reproduce-brax SCENARIOS={scenario} METHODS=sac_n BUDGET={budget:g} BACKEND={backend} "
      f"SAC={sac_settings}` to make it."
    )
  reference = json.loads(path.read_text())
  # Files made before the fast settings existed carry no ``sac_settings``: the paper's.
  made_with = (
    reference["backend"],
    float(reference["budget"]),
    reference.get("sac_settings", "paper"),
  )
  if made_with != (backend, float(budget), sac_settings):
    raise ValueError(f"{path} was made at other settings than its name says.")
  return reference
