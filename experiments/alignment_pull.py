"""How hard Rewire's alignment pull holds the hidden weights in the second task.

    python experiments/alignment_pull.py --betas 0.01 1 100
    python experiments/alignment_pull.py --betas 100 --adapter-lrs 1e-3 1e-5 --name adapter_sgd
    python experiments/alignment_pull.py --scenario halfcheetah/robustness --betas 1 --plain-l2

Trains Rewire (the protocol's settings, one seed) on the first task of ``--scenario``
(halfcheetah/forgetting by default) for ``--first-steps``, ends it (cached wiring, anchor M),
begins the second task, and then, for each beta, trains the second task for ``--epochs`` epochs
from that same state, measuring every ``--every`` epochs on a replay batch: the RMS per hidden
kernel weight of the gradient of the actor loss (SAC + distillation) and of ``beta * L_SP``, and
``sqrt(L_SP / n)``, the RMS distance of the hidden weights from their aligned targets (and from
the unaligned M), the share of the adapters' positions that have left the identity, the RMS of
``beta * L_SP``'s gradient on the adapters' scores, the mean deterministic return on the second
task, and, over the epochs since the previous probe, the mean actor entropy and the largest
distillation loss. ``--adapter-lrs`` repeats the second task with the option
``adapter_optimizer="sgd"`` (plain SGD on the adapters) at each learning rate, from the same
first task, and ``--plain-l2`` with ``align=False`` (no adapters). Writes
``--out/<scenario>/<name>.json`` and prints rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from configs import brax as brax_configs  # noqa: E402

from rewirejax import compile_cache, sac  # noqa: E402
from rewirejax import logging as logs  # noqa: E402
from rewirejax import replay as replay_lib  # noqa: E402
from rewirejax.config import RewireConfig  # noqa: E402
from rewirejax.envs.scenarios import get_scenario, make_scenario_env  # noqa: E402
from rewirejax.methods import make_method  # noqa: E402
from rewirejax.methods.rewire import adapter_orders, alignment_loss, hidden_weights  # noqa: E402
from rewirejax.trainer import make_trainer  # noqa: E402

SCENARIO = "halfcheetah/forgetting"  # The default of --scenario.


def _hidden_kernel_rms(grads) -> float:
  kernels = [v["kernel"] for v in hidden_weights(grads).values()]
  return float(jnp.sqrt(sum(jnp.sum(k**2) for k in kernels) / sum(k.size for k in kernels)))


def make_probe(cfg, env, method, aligned: bool = True):
  """(state, key) -> (SAC grads, unit-beta alignment grads, RMS distances of the hidden weights
  to their aligned targets and to the unaligned anchor M, the share of adapter positions that
  left the identity). Without ``aligned`` (no adapters) the target is M and nothing moves."""
  networks = method.make_networks(env.observation_size, env.action_size, cfg)
  losses = method.make_losses(sac.losses_of(networks, cfg.sac, env.action_size), networks, cfg)
  align_tau = RewireConfig().align_tau  # The paper's tau2, as the method uses it.

  def probe(state, key):
    params, mstate = state.learner.params, state.method_state
    batch = replay_lib.sample(state.replay, key, cfg.sac.batch_size)
    without_pull = mstate._replace(coefs=mstate.coefs._replace(align_coef=jnp.float32(0.0)))
    sac_grads = jax.grad(lambda a: losses.actor(a, params, without_pull, batch, 1, key)[0])(
      params.actor
    )
    align = lambda a: alignment_loss(a, mstate.anchor, align_tau, aligned)  # noqa: E731
    align_grads = jax.grad(align)(params.actor)
    num_weights = sum(w.size for layer in mstate.anchor.values() for w in layer.values())
    to_anchor = alignment_loss(params.actor, mstate.anchor, align_tau, False)  # Plain ||W - M||^2.
    moved = jnp.float32(0.0)
    if aligned:
      out_orders, in_orders = adapter_orders(params.actor)
      identity = jnp.arange(out_orders.shape[-1])
      moved = jnp.mean(out_orders != identity) + jnp.mean(in_orders[1:] != identity)
    distances = jnp.sqrt(jnp.stack([align(params.actor), to_anchor]) / num_weights)
    return sac_grads, align_grads, distances, moved / 2

  return jax.jit(probe)


def _first_task(cfg, env, method):
  """The state after the first task (trained for ``cfg.steps_per_task``) and its end."""
  trainer = make_trainer(cfg, env, method)
  chunk = jax.jit(trainer.train_chunk)
  state = jax.jit(trainer.begin_task)(jax.jit(trainer.init)(jax.random.key(0)), 0)
  state, _ = jax.jit(trainer.warmup)(state, 0)
  for c in range(cfg.num_chunks):
    state, _ = chunk(state, 0, jnp.int32(cfg.epochs_in_chunk(c)))
  state, _ = jax.jit(trainer.end_task)(state, 0)
  return state


def _second_task(cfg, env, method, first_state, beta, args, label, aligned=True):
  """Rows of probes every ``args.every`` epochs of the second task from ``first_state`` at
  ``beta``, with ``method``'s optimizer (its fresh state from the second task's begin)."""
  trainer = make_trainer(cfg, env, method)
  epoch, evaluate = jax.jit(trainer.train_epoch), jax.jit(trainer.evaluate)
  lane = jax.jit(trainer.warmup)(jax.jit(trainer.begin_task)(first_state, 1), 1)[0]
  coefs = lane.method_state.coefs._replace(align_coef=jnp.float32(beta))
  lane = lane.replace(method_state=lane.method_state._replace(coefs=coefs))
  probe, rows = make_probe(cfg, env, method, aligned), []
  window = []  # The epochs' metrics since the last probe.
  for step in range(args.epochs + 1):
    if step % args.every == 0:
      entropy, distill = _window_summary(window)
      window = []
      sac_g, align_g, distances, moved = probe(lane, jax.random.key(step))
      to_target, to_anchor = (float(d) for d in distances)
      sac_rms, align_rms = _hidden_kernel_rms(sac_g), beta * _hidden_kernel_rms(align_g)
      adapter_rms = beta * _adapter_rms(align_g)
      task_return = float(
        evaluate(lane, jnp.array([1]), jax.random.split(jax.random.key(7), 1), 1)[0]
      )
      rows.append(
        [beta, step, sac_rms, align_rms, align_rms / sac_rms, to_target, to_anchor,
         float(moved), adapter_rms, task_return, entropy, distill]
      )  # fmt: skip
      print(
        f"{label}, beta {beta:g}, epoch {step}: |g_SAC| {sac_rms:.2e}, |g_align| "
        f"{align_rms:.2e} ({align_rms / sac_rms:.1f}x), |W - T| {to_target:.2e}, |W - M| "
        f"{to_anchor:.2e}, adapter positions moved {float(moved):.0%}, |g_adapters| "
        f"{adapter_rms:.2e}, return on the second task {task_return:.0f}, entropy {entropy:.2f}, "
        f"largest distillation {distill:.3g}",
        flush=True,
      )
    lane, metrics = epoch(lane, 1)
    window.append(metrics)
  return rows


def _window_summary(window) -> tuple[float, float]:
  """The mean actor entropy and the largest distillation loss of the epochs in ``window``
  (NaN before the first epoch)."""
  if not window:
    return float("nan"), float("nan")
  entropy = np.mean([float(np.mean(m["actor/entropy"])) for m in window])
  return float(entropy), max(float(np.max(m["rewire/distill"])) for m in window)


def _without_adapters(state):
  """``state`` with the actor's adapters dropped (their forward pass does not use them, and
  the second task's begin starts fresh optimizer states), for a variant with ``align=False``."""
  params = state.learner.params
  layers = {k: v for k, v in params.actor["params"].items() if not k.startswith("adapter_")}
  actor = {**params.actor, "params": layers}
  return state.replace(learner=state.learner._replace(params=params._replace(actor=actor)))


def _adapter_rms(grads) -> float:
  leaves = [v for k, v in grads["params"].items() if k.startswith("adapter_")]
  if not leaves:
    return 0.0
  return float(jnp.sqrt(sum(jnp.sum(x**2) for x in leaves) / sum(x.size for x in leaves)))


COLUMNS = [
  "beta", "epoch", "sac_grad_rms", "align_grad_rms", "ratio", "to_target_rms", "to_anchor_rms",
  "adapter_positions_moved", "adapter_grad_rms", "second_task_return", "actor_entropy",
  "largest_distill",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--scenario", default=SCENARIO, help="its first two tasks are used")
  parser.add_argument("--betas", type=float, nargs="+", default=[0.01, 1.0, 100.0])
  parser.add_argument("--first-steps", type=int, default=40_000)
  parser.add_argument("--epochs", type=int, default=400)
  parser.add_argument("--every", type=int, default=50)
  parser.add_argument(
    "--adapter-lrs",
    type=float,
    nargs="*",
    default=[],
    help="also run the option adapter_optimizer='sgd' at each of these adapter_lr values",
  )
  parser.add_argument(
    "--plain-l2",
    action="store_true",
    help="also run align=False (no adapters: plain L2 to M at beta, the rewire_cache_modes pull)",
  )
  parser.add_argument("--name", default="alignment_pull", help="the JSON file's name")
  parser.add_argument("--out", type=pathlib.Path, default=ROOT / "experiments" / "results" / "cpu")
  args = parser.parse_args(argv)
  compile_cache.enable()  # REWIREJAX_COMPILE_CACHE moves it or turns it off.
  protocol = brax_configs.PROTOCOLS["cpu"]
  scenario = args.scenario
  cfg = protocol.run_config(scenario, "rewire")
  cfg = dataclasses.replace(cfg, steps_per_task=args.first_steps, epochs_per_chunk=100)
  options = brax_configs.method_options(scenario, "rewire", protocol.preset, protocol.budget)
  env = make_scenario_env(get_scenario(scenario), protocol.backend)
  first_state = _first_task(cfg, env, make_method("rewire", cfg, **options))
  variants = {"actor_adam": options}
  for lr in args.adapter_lrs:
    variants[f"sgd {lr:g}"] = {**options, "adapter_optimizer": "sgd", "adapter_lr": lr}
  if args.plain_l2:
    variants["plain_l2"] = {**options, "align": False}
  results = {}
  for label, variant in variants.items():
    method, aligned = make_method("rewire", cfg, **variant), variant.get("align", True)
    start = first_state if aligned else _without_adapters(first_state)
    rows = [
      r for b in args.betas for r in _second_task(cfg, env, method, start, b, args, label, aligned)
    ]
    results[label] = np.asarray(rows)
  path = args.out / scenario / f"{args.name}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  settings = {k: v for k, v in vars(args).items() if k not in ("out", "name")}
  logs.write_json_atomic(path, {"columns": COLUMNS, "adapters": results, **settings})
  print(f"Wrote {path}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
