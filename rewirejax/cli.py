"""Command line: ``rewirejax train ...`` (see ``rewirejax train --help``)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import json
import pathlib
import sys
import time

import numpy as np

from rewirejax import compile_cache
from rewirejax.config import RunConfig
from rewirejax.extras import MissingExtraError

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"


def preset_names() -> list[str]:
  return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))


def load_preset(name_or_path: str, **options) -> RunConfig:
  """``get_config()`` of ``experiments/configs/<name>.py`` or of a given ``.py`` file, passed
  those ``options`` (e.g. ``scenario``) that its ``get_config`` accepts."""
  return _get_config(_preset_module(name_or_path), **options)


def _get_config(module, **options) -> RunConfig:
  accepted = inspect.signature(module.get_config).parameters
  return module.get_config(**{k: v for k, v in options.items() if k in accepted and v is not None})


def _preset_module(name_or_path: str):
  path = pathlib.Path(name_or_path)
  if path.suffix != ".py":
    path = CONFIG_DIR / f"{name_or_path}.py"
    if not path.exists():
      raise ValueError(f"Unknown preset {name_or_path!r}; choices: {preset_names()}.")
  if not path.exists():
    raise ValueError(f"Preset file {str(path)!r} does not exist.")
  spec = importlib.util.spec_from_file_location(f"rewirejax_preset_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # Dataclasses defined in the preset look their module up.
  spec.loader.exec_module(module)
  return module


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="rewirejax", description="Continual RL by rewiring.")
  parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
  parser.add_argument(
    "--compile-cache",
    metavar="DIR|off",
    help="the persistent compilation cache's folder, or off (default: $REWIREJAX_COMPILE_CACHE, "
    "else ~/.cache/rewirejax/xla)",
  )
  sub = parser.add_subparsers(dest="command", required=True)
  train = sub.add_parser("train", help="train SAC (FT-1) on a task or a scenario")
  train.add_argument("--preset", default="demo", help="experiments/configs/<name>.py or a path")
  train.add_argument("--env", help="halfcheetah | ant | humanoid (default: the preset's)")
  train.add_argument("--backend", help="mjx | spring | generalized | positional")
  group = train.add_mutually_exclusive_group()
  group.add_argument("--task", help="one named task of the env, e.g. moon (default: normal)")
  group.add_argument("--scenario", help="a task sequence, e.g. halfcheetah/forgetting")
  train.add_argument("--steps", type=int, help="environment steps per task")
  train.add_argument("--seeds", type=int, default=1, help="number of seeds, one vmapped job")
  train.add_argument("--seed", type=int, default=0, help="first seed")
  train.add_argument("--num-envs", type=int, help="parallel training environments")
  train.add_argument("--eval-every", type=int, default=1, help="evaluate every N chunks")
  train.add_argument(
    "--out",
    type=pathlib.Path,
    default=pathlib.Path("results/train"),
    help="output folder (checkpoints, metrics.jsonl, result.json, plots)",
  )
  train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
  train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  train.add_argument("--method", default="ft_1", help="a registered method, e.g. ft_1, sac_n")
  train.add_argument(
    "--distributed",
    action="store_true",
    help="one process per host: call jax.distributed.initialize() first (it finds SLURM, "
    "Open MPI and TPU pods itself; elsewhere give the three flags below) and shard the seeds "
    "over every host's devices",
  )
  train.add_argument("--coordinator", help="with --distributed: host:port of process 0")
  train.add_argument("--num-processes", type=int, help="with --distributed: process count")
  train.add_argument("--process-id", type=int, help="with --distributed: this process's index")
  report = sub.add_parser("report", help="tables and plots from reproduce-brax result files")
  report.add_argument("results", type=pathlib.Path, help="the results folder, e.g. results/")
  report.add_argument(
    "--references", type=pathlib.Path, help="SAC-N references (default experiments/references)"
  )
  report.add_argument(
    "--readme", type=pathlib.Path, help="also rewrite this file's report blocks (README.md)"
  )
  sweep = sub.add_parser("sweep", help="a grid of alpha / beta / tau x seeds as one vmapped job")
  sweep.add_argument("--scenario", required=True, help="e.g. halfcheetah/forgetting")
  sweep.add_argument("--method", default="rewire", help="a method with traced coefficients")
  sweep.add_argument("--preset", default="brax", help="experiments/configs/<name>.py")
  sweep.add_argument("--protocol", help="the preset's PROTOCOLS entry giving the defaults below")
  sweep.add_argument("--rewire-preset", help="paper | reference (default: the protocol's)")
  sweep.add_argument("--budget", type=float, help="fraction of the paper's steps")
  sweep.add_argument("--backend")
  sweep.add_argument("--num-envs", type=int)
  sweep.add_argument("--eval-envs", type=int)
  sweep.add_argument("--seeds", type=int, help="default: 3")
  sweep.add_argument("--sac", help="SAC settings of the preset: paper | fast | cpu")
  swept = (
    ("alpha", "distillation"),
    ("beta", "alignment"),
    ("tau", "SoftSort"),
    ("coef", "FT-L2's or EWC's coefficient"),
  )
  for name, meaning in swept:
    sweep.add_argument(f"--{name}", type=float, nargs="+", help=f"{meaning} values to sweep")
  sweep.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/sweep"))
  sweep.add_argument("--no-progress", action="store_true")
  return parser


def sweep_command(args: argparse.Namespace) -> int:
  """Runs the grid, writes ``<out>/<scenario>/<method>.json`` and prints a ranked table."""
  from rewirejax import logging as logs
  from rewirejax.envs import cw
  from rewirejax.envs.scenarios import get_scenario, make_scenario_env
  from rewirejax.methods import make_method
  from rewirejax.sweep import grid_points, run_sweep

  grid = _sweep_grid(args)
  module = _preset_module(args.preset)
  _apply_sweep_protocol(args, module)
  if args.seeds < 1:
    raise ValueError(f"--seeds must be >= 1, got {args.seeds}.")
  scenario = get_scenario(args.scenario)
  cfg = _get_config(
    module,
    scenario=args.scenario,
    method=args.method,
    budget=args.budget,
    backend=args.backend,
    num_envs=args.num_envs,
    num_eval_envs=args.eval_envs,
    sac_settings=args.sac,
  )
  options = {}
  if hasattr(module, "method_options"):
    options = module.method_options(
      args.scenario, args.method, args.rewire_preset, args.budget, args.sac
    )
  method = make_method(args.method, cfg, **options)
  lanes = cw.lanes_needed(cfg.sac.num_envs, cfg.num_eval_envs, len(grid_points(grid)) * args.seeds)
  env = make_scenario_env(scenario, cfg.backend, num_lanes=lanes)
  run_dir = _sweep_run_dir(args, cfg, grid)
  start = time.perf_counter()
  tasks, seeds = range(len(scenario.tasks)), range(args.seeds)
  kwargs = {"out_dir": run_dir, "resume": True, "progress": not args.no_progress}
  result = run_sweep(cfg, env, method, tasks, grid, seeds, **kwargs)
  per_lane, label = _sweep_scores(args, cfg, result.returns[:, :, -1, :])
  path = args.out / args.scenario / f"{args.method}.json"
  logs.write_json_atomic(
    path,
    {
      "protocol": args.protocol,
      "scenario": args.scenario,
      "method": args.method,
      "method_options": options,
      "rewire_preset": args.rewire_preset,
      "sac_settings": args.sac,
      "budget": args.budget,
      "backend": cfg.backend,
      "config": cfg,
      "points": result.points,
      "seeds": result.seeds,
      "returns": result.returns,
      "curves": result.curves,
      "score": per_lane,
      "score_label": label,
      "wall_seconds": time.perf_counter() - start,
    },
  )
  print(f"\n{'point':40} {label}")
  for p in np.argsort(-np.nanmean(per_lane, axis=1)):
    point = ", ".join(f"{k}={v:g}" for k, v in result.points[p].items())
    lane = per_lane[p]
    print(f"{point:40} {np.nanmean(lane):.3f} ± {np.nanstd(lane):.3f}")
  print(f"Wrote {path} ({time.perf_counter() - start:.0f} s).")
  return 0


def _sweep_grid(args: argparse.Namespace) -> dict[str, list[float]]:
  """The swept coefficients' values, checked: at least one, none negative, tau > 0."""
  grid = {k: getattr(args, k) for k in ("alpha", "beta", "tau", "coef") if getattr(args, k)}
  if not grid:
    raise ValueError("give at least one of --alpha, --beta, --tau, --coef to sweep.")
  negative = {k: v for k, values in grid.items() for v in values if v < 0}
  if negative:
    raise ValueError(f"swept coefficients must be >= 0, got {negative}.")
  if any(v <= 0 for v in grid.get("tau", [])):
    raise ValueError(f"swept tau values must be > 0, got {grid['tau']}.")
  return grid


def _sweep_run_dir(args: argparse.Namespace, cfg: RunConfig, grid) -> pathlib.Path:
  """``<out>/<scenario>/<method>/``, the sweep's checkpoints: the same command resumes a killed
  sweep, and the folder refuses a sweep of other settings (the lanes would not match)."""
  from rewirejax import logging as logs

  run_dir = args.out / args.scenario / args.method
  settings = {
    "protocol": args.protocol,
    "grid": grid,
    "seeds": args.seeds,
    "rewire_preset": args.rewire_preset,
    "sac_settings": args.sac,
    "budget": args.budget,
    "backend": cfg.backend,
    "num_envs": cfg.sac.num_envs,
    "eval_envs": cfg.num_eval_envs,
  }
  marker = run_dir / "sweep.json"
  if marker.exists() and json.loads(marker.read_text()) != json.loads(json.dumps(settings)):
    raise ValueError(
      f"{run_dir} holds a sweep of other settings ({marker.read_text().strip()}); "
      "remove it or choose another --out."
    )
  run_dir.mkdir(parents=True, exist_ok=True)
  logs.write_json_atomic(marker, settings)
  return run_dir


def _sweep_scores(args: argparse.Namespace, cfg: RunConfig, final) -> tuple[np.ndarray, str]:
  """Each lane's score [points, seeds] from the final returns [points, seeds, eval tasks]:
  normalised by SAC-N's where a reference of these settings exists, else raw; and its label."""
  from rewirejax import references
  from rewirejax.metrics import normalize

  label = "final return (mean over tasks)"
  try:
    ref = references.load_reference(
      references.DEFAULT_DIR, args.scenario, cfg.backend, args.budget, args.sac
    )
    ref_returns = np.asarray(ref["final_returns"], dtype=float)
    final = normalize(final, ref_returns)  # NaN, so left out, where SAC-N's return is <= 0.
    label = "performance (SAC-N = 1)"
    skipped = np.flatnonzero(ref_returns <= 0).tolist()
    if skipped:
      label += "*"
      print(f"*: SAC-N's return is not positive on tasks {skipped}, left out of the average.")
  except ValueError as error:
    print(f"Raw returns: {error}")
  return np.nanmean(final, axis=-1), label


# The sweep's defaults without --protocol (its own seed count, 3, not the paper protocol's 10).
_SWEEP_DEFAULTS = {"budget": 1.0, "backend": "mjx", "seeds": 3, "sac": "paper", "preset": "paper"}


def _apply_sweep_protocol(args: argparse.Namespace, module) -> None:
  """Fills the sweep's unset settings from the preset's ``PROTOCOLS[args.protocol]`` (or
  ``_SWEEP_DEFAULTS`` without ``--protocol``)."""
  protocols = getattr(module, "PROTOCOLS", {})
  if args.protocol is not None and args.protocol not in protocols:
    raise ValueError(f"Unknown protocol {args.protocol!r}; choices: {list(protocols)}.")
  defaults = dict(_SWEEP_DEFAULTS)
  if args.protocol is not None:
    protocol = protocols[args.protocol]
    defaults = {k: getattr(protocol, k) for k in defaults}
    defaults.update(num_envs=protocol.num_envs, eval_envs=protocol.eval_envs)
  defaults["rewire_preset"] = defaults.pop("preset")
  for name, value in defaults.items():
    if getattr(args, name) is None:
      setattr(args, name, value)


def _configure(args: argparse.Namespace, module=None) -> tuple[RunConfig, list, int]:
  """The run config, task specs and seed count of ``train``; ``module``: the preset's module
  when the caller has loaded it already."""
  from rewirejax.envs.scenarios import get_scenario, get_task

  module = module or _preset_module(args.preset)
  # A scenario-aware preset (experiments/configs/brax.py) gets the scenario's SAC settings.
  cfg = _get_config(module, scenario=args.scenario, method=args.method, backend=args.backend)
  if args.env:
    cfg = dataclasses.replace(cfg, env_name=args.env)
  if args.backend:
    cfg = dataclasses.replace(cfg, backend=args.backend)
  if args.num_envs is not None:
    cfg = dataclasses.replace(cfg, sac=dataclasses.replace(cfg.sac, num_envs=args.num_envs))
  if args.scenario:
    scenario = get_scenario(args.scenario)
    if args.env and args.env != scenario.env_name:
      raise ValueError(f"scenario {args.scenario} runs on {scenario.env_name}, not {args.env}.")
    cfg = dataclasses.replace(
      cfg, env_name=scenario.env_name, max_tasks=max(cfg.max_tasks, len(scenario.tasks))
    )
    specs = list(scenario.tasks)
  else:
    specs = [get_task(cfg.env_name, args.task or "normal")]
  if args.steps is not None:
    cfg = dataclasses.replace(cfg, steps_per_task=args.steps)
  if args.seeds < 1:
    raise ValueError(f"--seeds must be >= 1, got {args.seeds}.")
  cfg.validate()
  return cfg, specs, args.seeds


def _scenario_method_options(args: argparse.Namespace, cfg: RunConfig, module) -> dict:
  """The preset ``module``'s per-scenario settings of ``--method`` (e.g. FT-L2's coefficient),
  at the budget that ``--steps`` makes (steps per task / the scenario's)."""
  from rewirejax.envs.scenarios import get_scenario

  if not args.scenario or not hasattr(module, "method_options"):
    return {}
  budget = cfg.steps_per_task / get_scenario(args.scenario).steps_per_task
  return module.method_options(args.scenario, args.method, budget=min(budget, 1.0))


def print_curve(history: list[dict], cfg: RunConfig) -> None:
  """The training curve as a table: env steps vs mean episode return (over seeds)."""
  print(f"\n{'task':>4} {'chunk':>5} {'env steps':>10} {'recent return':>13} {'steps/s':>8}")
  step = max(len(history) // 20, 1)
  rows = history[::step] + ([] if (len(history) - 1) % step == 0 else history[-1:])
  for r in rows:
    steps = cfg.env_steps_after_chunk(r["chunk"])
    ret = r.get("recent_return")
    ret = "n/a" if ret is None else f"{ret:.1f}"
    print(
      f"{r['task_index']:>4} {r['chunk']:>5} {steps:>10} {ret:>13} {r['env_steps_per_s']:>8.0f}"
    )


def plot_curves(result, cfg: RunConfig, names: list[str], eval_every: int, path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 3.5))
  steps = cfg.curve_steps(eval_every, result.curves.shape[-1])
  for t, name in enumerate(names):
    curve = result.curves[:, t]  # [seeds, evals]
    mean = np.nanmean(curve, axis=0)
    ax.plot(steps, mean, label=f"task {t}: {name}")
    if curve.shape[0] > 1:
      std = np.nanstd(curve, axis=0)
      ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
  ax.set(
    xlabel="environment steps in the task",
    ylabel="deterministic return",
    title=f"{cfg.env_name} ({cfg.backend}), {result.curves.shape[0]} seed(s)",
  )
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def report_command(args: argparse.Namespace) -> int:
  from rewirejax import references
  from rewirejax.report import build_report

  table = build_report(args.results, args.references or references.DEFAULT_DIR, args.readme)
  print(table.read_text())
  print(
    f"Wrote {table}, {table.with_suffix('.csv')}, {table.with_name('claims.md')} and the plots "
    "next to each result."
  )
  if args.readme is not None:
    print(f"Rewrote the tables of {args.readme}.")
  return 0


def _initialize_distributed(args: argparse.Namespace) -> None:
  """``jax.distributed.initialize`` from the flags (before anything else touches JAX)."""
  import jax

  flags = (args.coordinator, args.num_processes, args.process_id)
  if not args.distributed:
    if any(f is not None for f in flags):
      raise ValueError("--coordinator, --num-processes and --process-id need --distributed.")
    return
  jax.distributed.initialize(
    coordinator_address=args.coordinator,
    num_processes=args.num_processes,
    process_id=args.process_id,
  )
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts' gathers.


def train_command(args: argparse.Namespace) -> int:
  import jax

  from rewirejax.envs import cw
  from rewirejax.envs.scenarios import make_sequence_env
  from rewirejax.methods import make_method
  from rewirejax.train import train_sequence

  _initialize_distributed(args)
  module = _preset_module(args.preset)  # Executed once: the config and the method options.
  cfg, specs, num_seeds = _configure(args, module)
  method = make_method(args.method, cfg, **_scenario_method_options(args, cfg, module))
  lanes = cw.lanes_needed(cfg.sac.num_envs, cfg.num_eval_envs, num_seeds)
  env = make_sequence_env(cfg.env_name, tuple(specs), cfg.backend, num_lanes=lanes)
  seeds = list(range(args.seed, args.seed + num_seeds))
  print(
    f"Training {method.name} on {cfg.env_name} ({cfg.backend}): tasks {[s.name for s in specs]}, "
    f"{cfg.steps_per_task:,} steps each, seeds {seeds}, {cfg.sac.num_envs} envs; "
    f"output {args.out}"
  )
  start = time.perf_counter()
  result = train_sequence(
    cfg,
    env,
    method,
    tasks=range(len(specs)),
    seeds=seeds,
    out_dir=args.out,
    resume=args.resume,
    eval_every_chunks=args.eval_every,
    progress=not args.no_progress,
  )
  if jax.process_index() != 0:  # Every process has the results; one prints and plots them.
    return 0
  print_curve(result.chunk_metrics, cfg)
  if args.eval_every:
    plot_curves(
      result, cfg, [s.name for s in specs], args.eval_every, args.out / "learning_curve.png"
    )
    evals = np.nanmean(result.curves, axis=0)
    for t, spec in enumerate(specs):
      print(
        f"\nDeterministic return on {spec.name} during training (mean over seeds): "
        + ", ".join(f"{x:.1f}" for x in evals[t])
      )
  print(
    f"\nFinal returns R[after task, eval task] (mean over seeds):\n"
    f"{np.array2string(np.nanmean(result.returns, axis=0), precision=1)}"
  )
  print(
    f"Wall time {time.perf_counter() - start:.0f} s. Files in {args.out}: manifest.json, "
    "metrics.jsonl, result.json, learning_curve.png, checkpoints/"
  )
  return 0


def main(argv: list[str] | None = None) -> int:
  """Runs a command. Bad input exits 2 and a non-finite loss 1, each with one line on stderr
  (``--debug``: the traceback instead)."""
  args = _parser().parse_args(argv)
  commands = {"report": report_command, "sweep": sweep_command, "train": train_command}
  try:
    compile_cache.enable(args.compile_cache)
    return commands[args.command](args)
  except (ValueError, FloatingPointError, MissingExtraError) as error:
    if args.debug:
      raise
    print(f"rewirejax: error: {error}", file=sys.stderr)
    return 1 if isinstance(error, FloatingPointError) else 2


if __name__ == "__main__":
  sys.exit(main())
