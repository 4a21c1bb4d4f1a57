"""The paper's Brax experiments: scenarios x methods, all seeds of a pair in one vmapped job.

    python experiments/reproduce_brax.py --scenarios halfcheetah/forgetting --methods ft_1 sac_n \
        --seeds 3 --budget 0.02 --backend spring

(or ``make reproduce-brax SCENARIOS=... METHODS=... SEEDS=... BUDGET=... BACKEND=...``). For each
pair it writes ``<out>/<scenario>/<method>.json`` (R matrices, curves, config, timing) and keeps
the run's checkpoints in ``<out>/<scenario>/<method>/``, so a killed run resumes where it
stopped and a finished pair is not recomputed. SAC-N runs first in each scenario; its returns
become the scenario's reference (``experiments/references/``) when none exists at this budget
and backend. Finally the table (``<out>/table.md``, ``.csv``) and plots are rebuilt from the
JSON files, as ``rewirejax report <out>`` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from configs import brax as brax_configs  # noqa: E402

from rewirejax import compile_cache  # noqa: E402
from rewirejax import logging as logs  # noqa: E402
from rewirejax import references as refs  # noqa: E402
from rewirejax.config import RunConfig  # noqa: E402
from rewirejax.envs import cw  # noqa: E402
from rewirejax.envs.scenarios import get_scenario, make_scenario_env, scenario_names  # noqa: E402
from rewirejax.methods import (  # noqa: E402
  METHODS,
  REWIRE_ABLATIONS,
  REWIRE_VARIANTS,
  make_method,
  parse_method_spec,
  same_options,
)
from rewirejax.report import build_report  # noqa: E402
from rewirejax.train import train_sequence  # noqa: E402

BRAX_SCENARIOS = [name for name in scenario_names() if name.split("/")[0] not in ("toy", "cw")]
# Table 1; ablations and variants by name.
MAIN_METHODS = [m for m in METHODS if m not in {**REWIRE_ABLATIONS, **REWIRE_VARIANTS}]


def _settings(
  cfg, scenario, method, budget, seeds, options, preset, sac_settings, protocol
) -> dict:
  """What makes a finished result reusable: the same settings."""
  return {
    "protocol": protocol,
    "scenario": scenario,
    "method": method,
    "budget": budget,
    "backend": cfg.backend,
    "seeds": seeds,
    "config": logs.to_jsonable(cfg),
    "method_options": options,
    "method_preset": preset if method.startswith("rewire") else None,
    "sac_settings": sac_settings,
  }


def _with_new_fields(saved_config: Any) -> Any:
  """A saved config with the fields added since it was written set to their defaults, which
  are the behaviour from before each was added (a new option is off by default)."""
  if not isinstance(saved_config, dict):
    return saved_config
  return _fill_missing(saved_config, logs.to_jsonable(RunConfig()))


def _fill_missing(saved: dict, defaults: dict) -> dict:
  filled = {k: defaults[k] for k in defaults if k not in saved}
  for k, value in saved.items():
    nested = defaults.get(k)
    filled[k] = (
      _fill_missing(value, nested)
      if isinstance(value, dict) and isinstance(nested, dict)
      else value
    )
  return filled


def _same_settings(saved: dict, settings: dict) -> bool:
  """Whether ``saved`` (a result or a run folder's ``settings.json``) was made with
  ``settings``: every key compared but the protocol's name (the settings it stands for are
  compared, and older files lack it), the method's options as the options they resolve to."""
  keys = [k for k in settings if k not in ("protocol", "method_options")]
  saved = {**saved, "config": _with_new_fields(saved.get("config"))}
  same = {k: saved.get(k) for k in keys} == {k: settings[k] for k in keys}
  options = saved.get("method_options", {}), settings["method_options"]
  return same and same_options(parse_method_spec(settings["method"])[0], *options)


def run_pair(
  scenario: str,
  method_name: str,
  seeds: list[int],
  budget: float,
  backend: str,
  out: pathlib.Path,
  progress: bool = True,
  num_envs: int | None = None,
  num_eval_envs: int | None = None,
  preset: str = "paper",
  sac_settings: str = "paper",
  protocol: str | None = None,
) -> dict:
  """Trains one (scenario, method) with all seeds vmapped; returns the result payload.
  ``method_name`` may be a spec, ``rewire+distill=mse`` (``parse_method_spec``): the method at
  its preset with those options replaced, written under the spec's name."""
  base, overrides = parse_method_spec(method_name)
  cfg = brax_configs.get_config(
    scenario, base, budget, backend, num_envs, num_eval_envs, sac_settings
  )
  preset_options = brax_configs.method_options(scenario, base, preset, budget, sac_settings)
  options = {**preset_options, **overrides}
  settings = _settings(
    cfg, scenario, method_name, budget, seeds, options, preset, sac_settings, protocol
  )
  result_path = out / scenario / f"{method_name}.json"
  if result_path.exists():
    result = json.loads(result_path.read_text())
    older = {"method_options": {}, "method_preset": None, "sac_settings": "paper"}
    saved = {**older, **result}  # Older files lack them.
    if not _same_settings(saved, settings):
      raise ValueError(
        f"{result_path} holds a run with other settings (budget, backend, seeds or config); "
        "use another --out or delete it."
      )
    print(f"{scenario} / {method_name}: done before, kept ({result_path}).")
    return result
  run_dir = out / scenario / method_name
  saved = run_dir / "settings.json"
  older = {"sac_settings": "paper"}
  if saved.exists() and not _same_settings(
    {**older, **json.loads(saved.read_text())}, logs.to_jsonable(settings)
  ):
    raise ValueError(f"{run_dir} holds checkpoints of a run with other settings; delete it.")
  run_dir.mkdir(parents=True, exist_ok=True)
  logs.write_json_atomic(saved, settings)

  spec = get_scenario(scenario)
  lanes = cw.lanes_needed(cfg.sac.num_envs, cfg.num_eval_envs, len(seeds))
  env = make_scenario_env(spec, backend, num_lanes=lanes)
  method = make_method(base, cfg, **options)
  eval_every = brax_configs.eval_every_chunks(cfg, budget, sac_settings)
  print(
    f"{scenario} / {method_name}: {len(spec.tasks)} tasks x {cfg.steps_per_task:,} steps, "
    f"seeds {seeds}, backend {cfg.backend}, {cfg.sac.num_envs} envs, eval "
    f"{cfg.num_eval_envs} envs x {cfg.num_eval_rollouts}"
  )
  start = time.perf_counter()
  result = train_sequence(
    cfg,
    env,
    method,
    tasks=range(len(spec.tasks)),
    seeds=seeds,
    out_dir=run_dir,
    resume=True,
    eval_every_chunks=eval_every,
    progress=progress,
  )
  wall = time.perf_counter() - start
  train_seconds = sum(m["seconds"] for m in result.chunk_metrics)
  trained_steps = sum(
    len(seeds) * cfg.epochs_in_chunk(m["chunk"]) * cfg.sac.num_envs for m in result.chunk_metrics
  )
  payload = {
    **settings,
    "env_name": spec.env_name,
    "task_names": [t.name for t in spec.tasks],
    "steps_per_task": cfg.steps_per_task,
    "returns": result.returns,
    "curves": result.curves,
    "curve_steps": cfg.curve_steps(eval_every, result.curves.shape[-1]),
    "policy_params": result.policy_params,
    "ft_1_policy_params": result.ft_1_policy_params,
    # Over every session the run took (before 2026-12-02: this call only, from the resume).
    "wall_seconds": result.seconds,
    "wall_seconds_this_call": wall,
    "train_env_steps_per_s": trained_steps / train_seconds if train_seconds else None,
    "versions": logs.manifest(None)["versions"],
  }
  logs.write_json_atomic(result_path, payload)
  return json.loads(result_path.read_text())


def _apply_protocol(args: argparse.Namespace) -> None:
  """Fills the settings not given on the command line from ``--protocol``; a result records
  the protocol and every setting it ran with."""
  if args.protocol not in brax_configs.PROTOCOLS:
    raise ValueError(
      f"Unknown protocol {args.protocol!r}; choices: {list(brax_configs.PROTOCOLS)}."
    )
  protocol = brax_configs.PROTOCOLS[args.protocol]
  for field in dataclasses.fields(protocol):  # Named as the flags are.
    if getattr(args, field.name) is None:
      setattr(args, field.name, getattr(protocol, field.name))


def main(
  argv: list[str] | None = None,
  default_scenarios: tuple[str, ...] = tuple(BRAX_SCENARIOS),
  description: str = __doc__.split("\n\n")[0],
) -> int:
  """The command line; ``reproduce_cw`` calls it with Continual World's scenarios."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument(
    "--scenarios", nargs="+", default=list(default_scenarios), help="default: all nine"
  )
  parser.add_argument(
    "--methods",
    nargs="+",
    default=MAIN_METHODS,
    help=f"default {MAIN_METHODS}; all: {list(METHODS)}; a spec such as rewire+distill=mse"
    " runs a method with options replaced, under that name",
  )
  parser.add_argument(
    "--protocol",
    default="paper",
    help=f"defaults of the settings below: {list(brax_configs.PROTOCOLS)} (PROTOCOLS)",
  )
  parser.add_argument("--seeds", type=int, help="seeds 0..N-1, vmapped in one job")
  parser.add_argument("--budget", type=float, help="fraction of the paper's steps")
  parser.add_argument("--backend", help="mjx | spring | generalized | positional")
  parser.add_argument("--out", type=pathlib.Path, default=ROOT / "results")
  parser.add_argument("--references", type=pathlib.Path, default=refs.DEFAULT_DIR)
  parser.add_argument("--num-envs", type=int, help="training envs (paper protocol: 128)")
  parser.add_argument("--eval-envs", type=int, help="evaluation envs (paper: 512, or 16 <1)")
  parser.add_argument("--preset", help="rewire settings: paper (SPEC defaults) | reference")
  parser.add_argument(
    "--sac",
    help="SAC settings: paper (the scenario's) | fast (FAST_SAC: learns within a small budget)"
    " | cpu (CPU_SAC)",
  )
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  compile_cache.enable()  # REWIREJAX_COMPILE_CACHE moves it or turns it off.
  try:
    _apply_protocol(args)
    for scenario in args.scenarios:
      get_scenario(scenario)
    for method in args.methods:
      parse_method_spec(method)  # An unknown name or option fails here, before any run.
    if args.sac not in brax_configs.SAC_SETTINGS:
      raise ValueError(
        f"Unknown SAC settings {args.sac!r}; choices: {list(brax_configs.SAC_SETTINGS)}."
      )
    if args.seeds < 1:
      raise ValueError(f"--seeds must be >= 1, got {args.seeds}.")
    # SAC-N first: the scenario's normaliser.
    methods = sorted(args.methods, key=lambda m: m != "sac_n")
    seeds = list(range(args.seeds))
    for scenario in args.scenarios:
      for method in methods:
        result = run_pair(
          scenario,
          method,
          seeds,
          args.budget,
          args.backend,
          args.out,
          not args.no_progress,
          args.num_envs,
          args.eval_envs,
          args.preset,
          args.sac,
          args.protocol,
        )
        backend = result["backend"]  # Continual World's is always Warp.
        path = refs.reference_path(args.references, scenario, backend, args.budget, args.sac)
        if method == "sac_n" and not path.exists():
          refs.write_reference(args.references, refs.reference_from_result(result))
          print(f"Wrote the SAC-N reference {path}.")
    table = build_report(args.out, args.references)
  except ValueError as error:
    print(f"{parser.prog}: error: {error}", file=sys.stderr)
    return 2
  print(table.read_text())
  print(f"Table: {table}; plots next to each result in {args.out}/<scenario>/.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
