"""The first stage (the paper's Fig. 5a): learning curves on the first task of a scenario.

    python experiments/first_stage.py --protocol cpu --seeds 5

(or ``make first-stage``). Each variant trains task 0 of ``--scenario`` with all seeds vmapped in
one job, at the protocol's settings, with ``--curve-points`` evaluations. It writes, under
``<out>/<scenario>/first_stage/``, one ``<variant>.json`` per variant (curves, settings, wall
time; its checkpoints in ``<variant>/``, so a killed run resumes), then ``first_stage.json``,
``first_stage.md`` (steps to each threshold, ratios to FT, final returns) and
``first_stage.png`` (median over seeds with a bootstrap 95 % band). Finished variants are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from configs import brax as brax_configs  # noqa: E402

from rewirejax import compile_cache, metrics  # noqa: E402
from rewirejax import logging as logs  # noqa: E402
from rewirejax.config import RunConfig  # noqa: E402
from rewirejax.envs.scenarios import get_scenario, make_scenario_env  # noqa: E402
from rewirejax.methods import make_method, same_options  # noqa: E402
from rewirejax.train import train_sequence  # noqa: E402

# Variant -> (label, method, options over the protocol's method options). The first three are
# Fig. 5a's; the rest isolate one setting of the reference code each (``--variants``).
VARIANTS = {
  "ft": ("FT (plain MLP)", "ft_1", {}),
  "rewire_k1": ("rewiring alone (K = 1)", "rewire", {"num_modes": 1}),
  "rewire_k3": ("full method (K = 3, distillation)", "rewire", {}),
  "rewire_k1_tau0.1": ("K = 1, tau 0.1", "rewire", {"num_modes": 1, "tau": 0.1}),
  "rewire_k1_gumbel": ("K = 1, Gumbel 0.1", "rewire", {"num_modes": 1, "gumbel_noise": 0.1}),
  "rewire_k1_dropout": ("K = 1, dropout 0.1", "rewire", {"num_modes": 1, "dropout": 0.1}),
  "rewire_reference": ("reference preset (K = 3)", "rewire", {"preset": "reference"}),
}
FIG_5A = ("ft", "rewire_k1", "rewire_k3")
THRESHOLDS = (500.0, 1000.0, 1500.0, 2000.0)  # HalfCheetah returns; the paper's is 2000.


def variant_config(protocol: brax_configs.Protocol, scenario: str, curve_points: int) -> RunConfig:
  """The protocol's run config with the task cut into ``curve_points`` chunks."""
  cfg = protocol.run_config(scenario)
  return dataclasses.replace(cfg, epochs_per_chunk=math.ceil(cfg.train_epochs / curve_points))


def _same_settings(method_name: str, saved: dict, settings: dict) -> bool:
  """The same seeds and config, and method options that resolve to the same options."""
  same = all(saved.get(k) == settings[k] for k in ("seeds", "config"))
  options = saved.get("method_options", {}), settings["method_options"]
  return same and same_options(method_name, *options)


def run_variant(
  name: str,
  cfg: RunConfig,
  protocol: brax_configs.Protocol,
  scenario: str,
  seeds: list[int],
  out: pathlib.Path,
  progress: bool,
) -> dict:
  """Trains task 0 with one variant; returns (and writes) its result."""
  path = out / f"{name}.json"
  label, method_name, extra = VARIANTS[name]
  extra = dict(extra)
  preset = extra.pop("preset", protocol.preset)
  options = {
    **brax_configs.method_options(scenario, method_name, preset, protocol.budget, protocol.sac),
    **extra,
  }
  settings = logs.to_jsonable({"seeds": list(seeds), "config": cfg, "method_options": options})
  saved = out / name / "settings.json"
  if saved.exists() and not _same_settings(method_name, json.loads(saved.read_text()), settings):
    raise ValueError(f"{out / name} holds a run of other settings (seeds, config, options).")
  if path.exists():
    return json.loads(path.read_text())
  (out / name).mkdir(parents=True, exist_ok=True)
  logs.write_json_atomic(saved, settings)
  method = make_method(method_name, cfg, **options)
  env = make_scenario_env(get_scenario(scenario), protocol.backend)
  print(f"{name}: {label}, seeds {seeds}, {cfg.steps_per_task:,} steps", flush=True)
  start = time.perf_counter()
  result = train_sequence(
    cfg,
    env,
    method,
    [0],
    seeds,
    out_dir=out / name,
    resume=True,
    eval_every_chunks=1,
    progress=progress,
  )
  payload = {
    "variant": name,
    "label": label,
    "method": method_name,
    "method_options": options,
    "method_preset": preset,
    "protocol": dataclasses.asdict(protocol),
    "scenario": scenario,
    "seeds": list(seeds),
    "config": logs.to_jsonable(cfg),
    "curves": result.curves[:, 0],  # [seeds, points]
    "curve_steps": cfg.curve_steps(1, result.curves.shape[-1]),
    "chunk_metrics": result.chunk_metrics,
    "wall_seconds": time.perf_counter() - start,  # This call only (a resume counts from it).
    "versions": logs.manifest(None)["versions"],
  }
  logs.write_json_atomic(path, payload)
  return json.loads(path.read_text())


def summarize(results: dict[str, dict]) -> dict:
  """Per variant: steps to each threshold (median over seeds, the ratio FT / variant of the
  medians), the final return and the curve's late gain (``metrics.late_gain``)."""
  summary = {}
  for name, result in results.items():
    curves, steps = np.asarray(result["curves"], float), np.asarray(result["curve_steps"], float)
    reach = {t: metrics.steps_to_threshold(curves, steps, t) for t in THRESHOLDS}
    summary[name] = {
      "label": result["label"],
      "final_return_per_seed": curves[:, -1],
      "final_return_median": float(np.median(curves[:, -1])),
      "late_gain_of_median": float(metrics.late_gain(np.median(curves, axis=0), steps)),
      "steps_to": {
        f"{t:g}": {"per_seed": r, "reached": int(np.sum(np.isfinite(r))), "median": _median(r)}
        for t, r in reach.items()
      },
    }
  if "ft" in summary:
    for entry in summary.values():
      for t, reach in entry["steps_to"].items():
        ft = summary["ft"]["steps_to"][t]["median"]
        both = ft is not None and reach["median"] is not None
        reach["ft_over_this"] = ft / reach["median"] if both else None
  return logs.to_jsonable(summary)


def _median(steps: np.ndarray) -> float | None:
  """The median over seeds, a seed that never reached the threshold counting as infinitely
  slow (None if half or more never did)."""
  filled = np.where(np.isfinite(steps), steps, np.inf)
  value = float(np.median(filled))
  return value if math.isfinite(value) else None


def table(summary: dict, results: dict[str, dict]) -> str:
  """The markdown table of ``summary``: a variant per row, steps to each threshold (median
  over seeds) with FT's median over the variant's (">" when FT did not reach it)."""
  head = "| variant | final return (median) | late gain | " + " | ".join(
    f"steps to {t:g} (FT / this)" for t in THRESHOLDS
  )
  lines = [head + " |", "|" + "---|" * (3 + len(THRESHOLDS))]
  for name, entry in summary.items():
    cells, num_seeds = [], len(results[name]["seeds"])
    for t in THRESHOLDS:
      reach = entry["steps_to"][f"{t:g}"]
      if reach["median"] is None:
        cells.append(f"not reached by half ({reach['reached']}/{num_seeds})")
        continue
      ratio = reach.get("ft_over_this")
      ratio = f"{ratio:.2f}x" if ratio is not None else "FT: not reached"
      cells.append(f"{reach['median'] / 1e3:.0f} k ({ratio})")
    lines.append(
      f"| {entry['label']} | {entry['final_return_median']:.0f} | "
      f"{100 * entry['late_gain_of_median']:.0f} % | " + " | ".join(cells) + " |"
    )
  return "\n".join(lines) + "\n"


def plot(results: dict[str, dict], path: pathlib.Path, title: str) -> None:
  """Each variant's median curve over seeds with its bootstrap 95 % band."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.5, 4))
  for result in results.values():
    curves = np.asarray(result["curves"], float)
    steps = np.asarray(result["curve_steps"], float) / 1e3
    median, low, high = metrics.bootstrap_median(curves)
    ax.plot(steps, median, label=f"{result['label']} ({curves.shape[0]} seeds)")
    ax.fill_between(steps, low, high, alpha=0.2)
  ax.set(xlabel="environment steps (k)", ylabel="deterministic return", title=title)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--protocol", default="cpu", help=f"{list(brax_configs.PROTOCOLS)}")
  parser.add_argument("--scenario", default="halfcheetah/forgetting")
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--curve-points", type=int, default=10)
  parser.add_argument("--variants", nargs="+", default=list(FIG_5A), help=f"{list(VARIANTS)}")
  parser.add_argument("--out", type=pathlib.Path, default=ROOT / "experiments" / "results")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  compile_cache.enable()  # REWIREJAX_COMPILE_CACHE moves it or turns it off.
  try:
    if args.protocol not in brax_configs.PROTOCOLS:
      raise ValueError(
        f"Unknown protocol {args.protocol!r}; choices: {list(brax_configs.PROTOCOLS)}."
      )
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
      raise ValueError(f"Unknown variants {unknown}; choices: {list(VARIANTS)}.")
    if args.seeds < 1 or args.curve_points < 2:
      raise ValueError(
        f"--seeds must be >= 1 and --curve-points >= 2, got {args.seeds} and {args.curve_points}."
      )
    get_scenario(args.scenario)
  except ValueError as error:
    print(f"first_stage: error: {error}", file=sys.stderr)
    return 2
  protocol = brax_configs.PROTOCOLS[args.protocol]
  out = args.out / args.protocol / args.scenario / "first_stage"
  out.mkdir(parents=True, exist_ok=True)
  cfg = variant_config(protocol, args.scenario, args.curve_points)
  seeds = list(range(args.seeds))
  try:
    results = {
      name: run_variant(name, cfg, protocol, args.scenario, seeds, out, not args.no_progress)
      for name in args.variants
    }
  except ValueError as error:
    print(f"first_stage: error: {error}", file=sys.stderr)
    return 2
  # The summary covers every finished variant in the folder, not only this call's.
  for path in sorted(out.glob("*.json")):
    if path.stem in VARIANTS and path.stem not in results:
      results[path.stem] = json.loads(path.read_text())
  results = {name: results[name] for name in VARIANTS if name in results}
  summary = summarize(results)
  logs.write_json_atomic(out / "first_stage.json", {"protocol": args.protocol, **summary})
  text = table(summary, results)
  logs.write_text_atomic(out / "first_stage.md", text)
  plot(results, out / "first_stage.png", f"{args.scenario}, task 0, {args.protocol} protocol")
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
