"""The prepared device benchmark: ``make bench-device`` writes one JSON and one Markdown table.

On one accelerator, at the paper's settings for halfcheetah (halfcheetah/forgetting's SAC
settings, 128 envs, batch 256, 3 x 256 networks, 0.5 updates per transition; an actor and a
target update with every critic step, as brax.training's SAC), it measures:

- env-steps/s over all seeds of FT-1 and of Rewire (``mode_update`` "sample" and "all") at 1, 8
  and 32 seeds vmapped, with the mjx and the spring pipelines;
- brax.training's SAC at the same settings (one seed, 3 x 256), in the same run, so the ratios
  come from one run;
- for each case the chunk program's compile time, the device memory in use after its timed
  chunks and the process's peak so far (``Device.memory_stats``; absent on CPU);
- a learning check: FT-1's deterministic return after the warm-up and after ``learn_steps``
  more steps, per seed (it should rise).

Cases run in order of priority and none starts once the elapsed time plus the longest case so
far would pass ``--max-seconds`` (default 330), so the command ends within about 6 minutes
however slow the compiles are; what was skipped is listed. ``--tiny`` runs the same code at toy
sizes on the toy scenario, without brax.training, on CPU in about half a minute
(``tests/test_bench_device.py`` does, so it cannot rot). Figures are for one run of one
machine: compare cases of the same run.

    python experiments/bench_device.py [--tiny] [--out DIR] [--max-seconds S]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import bench  # noqa: E402
from configs import brax as brax_configs  # noqa: E402

from rewirejax import compile_cache  # noqa: E402
from rewirejax import logging as logs  # noqa: E402
from rewirejax.envs.scenarios import get_scenario, make_scenario_env  # noqa: E402
from rewirejax.methods import make_method  # noqa: E402
from rewirejax.train import make_task_program  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What the benchmark runs at (the paper's settings by default)."""

  scenario: str = "halfcheetah/forgetting"
  methods: tuple[tuple[str, str | None], ...] = (
    ("ft_1", None),
    ("rewire", "sample"),
    ("rewire", "all"),
  )  # (method, Rewire's mode_update).
  num_envs: int = 128
  batch_size: int = 256
  hidden_sizes: tuple[int, ...] = (256, 256, 256)
  replay_capacity: int = 1_280_000
  epochs_per_chunk: int = 50  # One timed chunk: 6,400 transitions a seed, 3,200 updates.
  timed_chunks: int = 3
  seeds: tuple[int, ...] = (1, 8, 32)
  backends: tuple[str, ...] = ("mjx", "spring")
  learn_steps: int = 100_000  # FT-1's learning check, per seed (8 seeds vmapped).
  learn_seeds: int = 8
  eval_envs: int = 16
  brax: bool = True  # brax.training's SAC alongside.


# The toy scenario (the tests' pure-JAX env), so that a CPU compiles it in seconds; no
# brax.training (``make bench``'s vs_brax section runs it through the same helper).
TINY = Sizes(
  scenario="toy/tiny",
  methods=(("ft_1", None), ("rewire", "sample")),
  num_envs=4,
  batch_size=8,
  hidden_sizes=(8, 8),
  replay_capacity=2_000,
  epochs_per_chunk=2,
  timed_chunks=2,
  seeds=(2,),
  backends=("toy",),
  learn_steps=64,
  learn_seeds=2,
  eval_envs=2,
  brax=False,
)


@dataclasses.dataclass(frozen=True)
class Case:
  backend: str
  method: str  # "ft_1", "rewire" or "brax" (brax.training's SAC).
  mode_update: str | None = None  # Rewire's.
  seeds: int = 1

  @property
  def label(self) -> str:
    name = self.method if self.mode_update is None else f"{self.method} ({self.mode_update})"
    return f"{name}, {self.seeds} seed{'s' * (self.seeds > 1)}, {self.backend}"


def cases_in_order(sizes: Sizes) -> list[Case]:
  """Priority order: per backend, one seed of every method and brax, then more seeds."""
  cases = []
  for backend in sizes.backends:
    for seeds in sizes.seeds:
      cases += [Case(backend, m, mode, seeds) for m, mode in sizes.methods]
      if seeds == 1 and sizes.brax:
        cases.append(Case(backend, "brax"))
  return cases


def run_config(backend: str, sizes: Sizes):
  """halfcheetah/forgetting's paper config at ``sizes`` (warm-up: 10 batches; no policy or
  target delay, as brax.training's SAC)."""
  backend = "spring" if sizes.scenario.startswith("toy/") else backend  # The toy ignores it.
  cfg = brax_configs.get_config(sizes.scenario, budget=1.0, backend=backend)
  warmup = brax_configs.round_up(10 * sizes.batch_size, sizes.num_envs)
  sac = dataclasses.replace(
    cfg.sac,
    num_envs=sizes.num_envs,
    batch_size=sizes.batch_size,
    hidden_sizes=sizes.hidden_sizes,
    replay_capacity=sizes.replay_capacity,
    warmup_transitions=warmup,
    policy_update_delay=1,
    target_update_delay=1,
  )
  steps = warmup + sizes.num_envs * sizes.epochs_per_chunk * sizes.timed_chunks
  return dataclasses.replace(
    cfg,
    sac=sac,
    steps_per_task=steps,
    epochs_per_chunk=sizes.epochs_per_chunk,
    num_eval_envs=sizes.eval_envs,
    num_eval_rollouts=1,
  )


def _program(case: Case, cfg, sizes: Sizes):
  env = make_scenario_env(get_scenario(sizes.scenario), cfg.backend)
  options = brax_configs.method_options(sizes.scenario, case.method)
  if case.mode_update is not None:
    options = {**options, "mode_update": case.mode_update}
  method = make_method(case.method, cfg, **options)
  return make_task_program(cfg, env, method, list(range(case.seeds)))


def _memory() -> dict[str, float | None]:
  stats = jax.local_devices()[0].memory_stats() or {}
  gib = {k: stats.get(k) for k in ("bytes_in_use", "peak_bytes_in_use")}
  return {f"{k.replace('bytes', 'gib')}": (v / 2**30 if v else None) for k, v in gib.items()}


def run_rewirejax_case(case: Case, sizes: Sizes) -> dict:
  """Compile, then ``timed_chunks`` chunks of one task: env-steps/s (median over chunks)."""
  cfg = run_config(case.backend, sizes)
  program = _program(case, cfg, sizes)
  task, epochs = jnp.int32(0), jnp.int32(cfg.epochs_per_chunk)
  start = time.perf_counter()
  state = jax.block_until_ready(program.begin_task(program.init(), task))
  setup_s = time.perf_counter() - start
  start = time.perf_counter()
  chunk = program.run_chunk.lower(state, task, epochs).compile()
  compile_s = time.perf_counter() - start
  seconds = []
  for _ in range(sizes.timed_chunks):
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(chunk(state, task, epochs))
    seconds.append(time.perf_counter() - start)
  steps = case.seeds * cfg.epochs_per_chunk * cfg.sac.num_envs
  rates = [steps / s for s in seconds]
  finite = bool(np.all(np.isfinite(metrics["critic/loss"])))
  return {
    "env_steps_per_s": float(np.median(rates)),
    "env_steps_per_s_range": [min(rates), max(rates)],
    "compile_s": compile_s,
    "init_warmup_s": setup_s,  # Their compiles and the warm-up's env steps.
    "finite_losses": finite,
    **_memory(),
  }


def run_brax_case(case: Case, sizes: Sizes) -> dict:
  """brax.training's SAC at the same settings (``bench.brax_sac_rates``)."""
  grad_updates = round(sizes.num_envs * 0.5)
  start = time.perf_counter()
  rates = bench.brax_sac_rates(
    case.backend,
    sizes.num_envs,
    grad_updates,
    sizes.timed_chunks,
    epochs_per_chunk=sizes.epochs_per_chunk,
    hidden_sizes=sizes.hidden_sizes,
    batch_size=sizes.batch_size,
  )
  return {
    "env_steps_per_s": float(np.median(rates)),
    "env_steps_per_s_range": [min(rates), max(rates)],
    "wall_s": time.perf_counter() - start,  # brax's compile included.
    **_memory(),
  }


def learning_check(backend: str, sizes: Sizes) -> dict:
  """FT-1's deterministic return per seed after the warm-up and after ``learn_steps`` more."""
  cfg = run_config(backend, sizes)
  epochs = max(sizes.learn_steps // sizes.num_envs, 1)
  cfg = dataclasses.replace(
    cfg, steps_per_task=cfg.sac.warmup_transitions + epochs * sizes.num_envs
  )
  case = Case(backend, "ft_1", seeds=sizes.learn_seeds)
  program = _program(case, cfg, sizes)
  task = jnp.int32(0)
  keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s), 1))(jnp.arange(case.seeds))
  start = time.perf_counter()
  state = program.begin_task(program.init(), task)
  before = program.evaluate_tasks(state, jnp.array([0]), keys, task)[:, 0]
  for chunk in range(cfg.num_chunks):
    state, _ = program.run_chunk(state, task, jnp.int32(cfg.epochs_in_chunk(chunk)))
  after = program.evaluate_tasks(state, jnp.array([0]), keys, task)[:, 0]
  before, after = np.asarray(before).tolist(), np.asarray(after).tolist()
  return {
    "backend": backend,
    "seeds": case.seeds,
    "env_steps_per_seed": cfg.steps_per_task,
    "return_after_warmup": before,
    "return_at_end": after,
    "rose": bool(np.mean(after) > np.mean(before)),
    "wall_s": time.perf_counter() - start,
  }


def _run_cases(sizes: Sizes, max_seconds: float, start: float) -> tuple[list[dict], list[str]]:
  """Every case in priority order until the time budget would be passed; then the skipped."""
  done, skipped, longest = [], [], 0.0
  for case in cases_in_order(sizes):
    if time.perf_counter() - start + longest > max_seconds:
      skipped.append(case.label)
      continue
    begun = time.perf_counter()
    run = run_brax_case if case.method == "brax" else run_rewirejax_case
    row = {**dataclasses.asdict(case), "label": case.label, **run(case, sizes)}
    row["case_s"] = time.perf_counter() - begun
    longest = max(longest, row["case_s"])
    done.append(row)
    print(f"{case.label}: {row['env_steps_per_s']:,.0f} env-steps/s ({row['case_s']:.0f} s)")
  return done, skipped


def table(result: dict) -> str:
  """The Markdown table of a result: each case's rate, its ratio to brax.training's on the
  same backend, compile time and memory."""
  brax = {r["backend"]: r["env_steps_per_s"] for r in result["cases"] if r["method"] == "brax"}
  lines = [
    f"Device: {result['device']}; jax {result['versions']['jax']}; {result['total_s']:.0f} s.",
    "",
    "| backend | method | seeds | env-steps/s (all seeds) | per seed | vs brax.training "
    "(1 seed) | chunk compile s | GiB in use | peak GiB so far |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in result["cases"]:
    method = r["method"] if r["mode_update"] is None else f"{r['method']} ({r['mode_update']})"
    ratio = f"{r['env_steps_per_s'] / brax[r['backend']]:.2f}x" if r["backend"] in brax else "-"
    cells = [
      r["backend"],
      method,
      str(r["seeds"]),
      f"{r['env_steps_per_s']:,.0f}",
      f"{r['env_steps_per_s'] / r['seeds']:,.0f}",
      ratio,
      f"{r['compile_s']:.1f}" if "compile_s" in r else "-",
      *(f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("gib_in_use", "peak_gib_in_use")),
    ]
    lines.append("| " + " | ".join(cells) + " |")
  if result["skipped"]:
    lines += ["", f"Skipped (time budget): {', '.join(result['skipped'])}."]
  check = result.get("learning")
  if check:
    lines += [
      "",
      f"Learning check (FT-1, {check['seeds']} seeds, {check['backend']}, "
      f"{check['env_steps_per_seed']:,} steps a seed): return after the warm-up "
      f"{np.mean(check['return_after_warmup']):.0f}, at the end "
      f"{np.mean(check['return_at_end']):.0f} (rose: {check['rose']}).",
    ]
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tiny", action="store_true", help="toy sizes (CPU, the test)")
  parser.add_argument("--max-seconds", type=float, default=330.0, help="the time budget")
  parser.add_argument(
    "--out", type=pathlib.Path, default=ROOT / "experiments" / "results" / "device"
  )
  args = parser.parse_args(argv)
  if args.max_seconds <= 0:
    parser.error("--max-seconds must be > 0")
  compile_cache.enable("off")  # Compile times are measured cold.
  sizes = TINY if args.tiny else Sizes()
  start = time.perf_counter()
  print(f"jax {jax.__version__}, devices: {jax.devices()}", flush=True)
  cases, skipped = _run_cases(sizes, args.max_seconds, start)
  learning = None
  if time.perf_counter() - start < args.max_seconds:
    learning = learning_check(sizes.backends[0], sizes)
  else:
    skipped.append("the learning check")
  result = {
    "device": str(jax.devices()),
    "platform": jax.default_backend(),
    "host": platform.node(),
    "sizes": dataclasses.asdict(sizes),
    "tiny": args.tiny,
    "cases": cases,
    "skipped": skipped,
    "learning": learning,
    "total_s": time.perf_counter() - start,
    "versions": logs.manifest(None)["versions"],
  }
  args.out.mkdir(parents=True, exist_ok=True)
  name = "bench_device_tiny" if args.tiny else "bench_device"
  logs.write_json_atomic(args.out / f"{name}.json", result)
  (args.out / f"{name}.md").write_text(table(json.loads((args.out / f"{name}.json").read_text())))
  print(table(result))
  print(f"Wrote {args.out / name}.json and .md")
  return 0


if __name__ == "__main__":
  sys.exit(main())
