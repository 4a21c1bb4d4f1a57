"""Benchmarks that print figures (never asserted in tests). Run: ``make bench``.

Sections:
  layers: a 256-wide Dense vs PermutedDense (and the reference's literal straight-through
    matmul layer) at batch 256, forward and forward+backward (targets: forward overhead
    <= 10 %, forward+backward <= 2x Dense).
  sac_update: the bare fused SAC update with a PermutedDense or a Dense actor.
  rewire_update: the update of every method (targets: Rewire sample <= 1.25x FT-1, all
    <= 1.8x sample).
  replay_memory, vs_brax, seeds: replay bytes, env steps/s against Brax's SAC, seeds vmapped.

Variants are timed in turn, in rounds, and the fastest round counts (``time_interleaved``):
this CPU is shared, and its load drifts by tens of percent over minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import platform
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from rewirejax import (
  _quiet_imports,  # noqa: F401  (brax and MJX without their noise)
  layers,
)
from rewirejax.networks import LEAKY_SLOPE


def time_call(fn: Callable[[], object], *, repeats: int = 7, min_seconds: float = 0.2) -> float:
  """Median seconds per call of a jitted ``fn`` (compiled and warmed up first)."""
  jax.block_until_ready(fn())
  calls = 1
  while True:  # Find a call count that runs for at least min_seconds.
    start = time.perf_counter()
    for _ in range(calls):
      out = fn()
    jax.block_until_ready(out)
    if time.perf_counter() - start >= min_seconds:
      break
    calls *= 2
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn()
    jax.block_until_ready(out)
    samples.append((time.perf_counter() - start) / calls)
  return float(np.median(samples))


def time_interleaved(
  fns: dict[str, Callable[[], object]], *, rounds: int = 3, min_seconds: float = 0.5
) -> dict[str, float]:
  """Seconds per call of each jitted fn: the fastest of ``rounds`` medians, the fns timed in
  turn each round. On a shared CPU the load drifts over minutes; interleaving exposes every
  fn to the same drift, and the fastest round is the least disturbed."""
  best = dict.fromkeys(fns, float("inf"))
  for _ in range(rounds):
    for name, fn in fns.items():
      best[name] = min(best[name], time_call(fn, repeats=3, min_seconds=min_seconds))
  return best


class _LiteralStraightThroughDense(nn.Module):
  """The reference code's layer, literally: ``(x @ kernel + bias) @ P.T`` with the
  straight-through matrix ``P = hard + soft - stop_gradient(soft)`` (a matmul forward and
  two more in the backward). Same gradients as ``PermutedDense``; kept here to time it."""

  features: int
  tau: float = 1.0

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(self.features)(x)
    scores = self.param("scores", layers.identity_scores, (1, self.features))[0]
    soft = layers.softsort(scores, self.tau)
    hard = jax.nn.one_hot(layers.wiring_of(scores), self.features, dtype=soft.dtype)
    return y @ (hard + soft - jax.lax.stop_gradient(soft)).T


def bench_layers(width: int = 256, batch: int = 256) -> dict[str, float]:
  """Dense vs PermutedDense (K = 1, tau = 1) vs the literal straight-through matmul layer:
  forward and forward+backward, per call."""
  x = jax.random.normal(jax.random.key(0), (batch, width))
  cotangent = jax.random.normal(jax.random.key(1), (batch, width))
  modules = {
    "Dense": nn.Dense(width),
    "PermutedDense": layers.PermutedDense(width),
    "literal ST": _LiteralStraightThroughDense(width),
  }
  calls = {}
  for name, module in modules.items():
    params = module.init(jax.random.key(2), x)
    # Random scores, so the gather really moves data (identity order would too, but be fair).
    if name != "Dense":
      scores = jax.random.uniform(jax.random.key(3), (1, width))
      params = {"params": {**params["params"], "scores": scores}}
    forward = jax.jit(module.apply)

    def loss(params, x, module=module):
      return jnp.sum(module.apply(params, x) * cotangent)

    forward_backward = jax.jit(jax.grad(loss, argnums=(0, 1)))
    calls[f"{name} forward"] = lambda f=forward, p=params: f(p, x)
    calls[f"{name} forward+backward"] = lambda f=forward_backward, p=params: f(p, x)
  results = time_interleaved(calls, min_seconds=0.2)

  print(
    f"\n## Layer: width {width}, batch {batch} ({jax.devices()[0].platform}, "
    f"{platform.processor() or platform.machine()})"
  )
  print(
    f"{'':20}{'Dense (us)':>12}{'PermutedDense (us)':>20}{'ratio':>7}{'target':>9}"
    f"{'literal ST (us)':>17}{'ratio':>7}"
  )
  for part, target in (("forward", 1.10), ("forward+backward", 2.0)):
    dense, permuted = results[f"Dense {part}"], results[f"PermutedDense {part}"]
    literal = results[f"literal ST {part}"]
    print(
      f"{part:20}{dense * 1e6:>12.1f}{permuted * 1e6:>20.1f}{permuted / dense:>7.2f}"
      f"{'<= ' + format(target, '.2f'):>9}{literal * 1e6:>17.1f}{literal / dense:>7.2f}"
    )
  return results


def _filled_replay(obs_size: int, act_size: int, capacity: int, num_envs: int = 128):
  """A full replay buffer of random transitions (the bare-update benchmarks sample from it)."""
  from rewirejax import replay as replay_lib
  from rewirejax.types import Transition

  zero = jnp.float32(0.0)
  example = Transition(
    jnp.zeros(obs_size), jnp.zeros(act_size), zero, jnp.zeros(obs_size), zero, zero
  )
  keys = jax.random.split(jax.random.key(1), 4)
  return replay_lib.init(capacity, example, num_envs, episode_length=1000)._replace(
    obs=jax.random.normal(keys[0], (capacity, obs_size)),
    action=jax.random.uniform(keys[1], (capacity, act_size), minval=-1, maxval=1),
    reward=jax.random.normal(keys[2], (capacity,)),
    newest_next_obs=jax.random.normal(keys[3], (num_envs, obs_size)),
    size=jnp.int32(capacity),
  )


def bench_sac_update(num_updates: int = 64) -> dict[str, float]:
  """Bare fused SAC update (no env) at HalfCheetah sizes: obs 17, act 6, batch 256, 3 x 256.

  ``num_updates`` update groups (policy delay 1: one critic + one actor/alpha step each)
  scanned in one jit, sampling from a filled replay buffer. Anchors on this 2-core CPU
  (issue 3): PyTorch eager 99 updates/s, one jitted JAX update 245/s, 64 scanned 279/s.

  Also prints the update's FLOPs (XLA's cost analysis of one compiled update; it counts a
  scan's body once, whatever its length) and, in the same run, the rate of a 256 x 256 x 256
  matmul, the shape the update is made of: updates/s cannot exceed that rate divided by the
  FLOPs per update by much.
  """
  from rewirejax import sac
  from rewirejax.config import SACConfig
  from rewirejax.networks import init_agent_params, make_sac_networks

  obs_size, act_size, capacity = 17, 6, 100_000
  cfg = SACConfig(policy_update_delay=1)  # An update: one critic and one actor step.
  calls, flops = {}, {}
  for label, permuted in (("PermutedDense actor (K=1)", True), ("Dense actor", False)):
    nets = make_sac_networks(obs_size, act_size, num_heads=8, permuted=permuted)
    params = init_agent_params(nets, jax.random.key(0), obs_size, act_size, 2.0)
    optimizers = sac.make_optimizers(cfg)
    learner = sac.init_learner(params, optimizers)
    replay = _filled_replay(obs_size, act_size, capacity)
    losses = sac.losses_of(nets, cfg, act_size)(nets.policy)
    update_group = sac.make_update_group(losses, optimizers, cfg)

    @jax.jit
    def run(learner, key, update_group=update_group):  # Bound now: timed after the loop.
      def body(learner, k):
        return update_group(learner, replay, (), jnp.int32(0), k)

      return jax.lax.scan(body, learner, jax.random.split(key, num_updates))[0]

    calls[label] = lambda run=run, learner=learner: run(learner, jax.random.key(2))
    one_update = jax.jit(
      lambda learner, key, update_group=update_group: update_group(
        learner, replay, (), jnp.int32(0), key
      )
    )
    flops[label] = _flops(one_update, learner, jax.random.key(2))
  matrix = jax.random.normal(jax.random.key(3), (256, 256))
  matmul = jax.jit(lambda a: a @ a)
  calls["256^3 matmul"] = lambda: matmul(matrix)
  seconds = time_interleaved(calls)
  matmul_gflops = 2 * 256**3 / seconds.pop("256^3 matmul") / 1e9
  results = {label: num_updates / sec for label, sec in seconds.items()}
  print(f"\n## Bare SAC update, HalfCheetah sizes, {num_updates} scanned per jit")
  print(f"256^3 matmul on this machine: {matmul_gflops:.0f} GFLOP/s")
  for label, rate in results.items():
    print(
      f"{label:32}{rate:>8.0f} updates/s  ({rate / 99:.2f}x PyTorch eager, "
      f"{rate / 279:.2f}x scanned-JAX anchor); {flops[label] / 1e9:.2f} GFLOP/update, "
      f"{rate * flops[label] / 1e9:.0f} GFLOP/s, ceiling at the matmul rate "
      f"{matmul_gflops * 1e9 / flops[label]:.0f} updates/s"
    )
  return results


def _flops(jitted: Callable[..., object], *args: object) -> float:
  """FLOPs of one call, from XLA's cost analysis of the compiled program."""
  cost = jitted.lower(*args).compile().cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def bench_rewire_update(num_updates: int = 32, sizes: str = "paper") -> dict[str, float]:
  """Time per fused update (HalfCheetah sizes; ``sizes`` "paper": batch 256, 3 x 256; "cpu":
  the cpu protocol's batch 128, 3 x 64) of FT-1 and of Rewire with
  one random mode per update (``mode_update="sample"``) or all K = 3 modes vmapped (``"all"``),
  the alignment penalty active (as from the second task on), and of the baselines. Targets on
  CPU: sample <= 1.25x FT-1, all <= 1.8x sample."""
  from rewirejax import sac
  from rewirejax.config import RunConfig, SACConfig
  from rewirejax.methods import make_method
  from rewirejax.methods.pnn import PNN_WIDTH
  from rewirejax.networks import init_agent_params

  obs_size, act_size, capacity = 17, 6, 50_000
  # An update: one critic and one actor step.
  network = {"paper": {}, "cpu": {"hidden_sizes": (64, 64, 64), "batch_size": 128}}[sizes]
  cfg = RunConfig(max_tasks=8, sac=SACConfig(policy_update_delay=1, **network))
  # PNN's columns keep the paper's share of the width, as in reproduce_brax.
  pnn_width = PNN_WIDTH * cfg.sac.hidden_sizes[0] // 256
  replay = _filled_replay(obs_size, act_size, capacity)
  variants = {
    "FT-1 (Dense)": ("ft_1", {}),
    "Rewire, sample (1 of K=3)": ("rewire", {"mode_update": "sample"}),
    "Rewire, all K=3 vmapped": ("rewire", {"mode_update": "all"}),
    "Rewire, sample, no adapters": ("rewire", {"mode_update": "sample", "align": False}),
    # The baselines' updates at the same sizes (8 tasks preallocated, penalties computed).
    "FT-L2": ("ft_l2", {}),
    "EWC": ("ewc", {}),
    "PackNet (masked grads)": ("packnet", {}),
    f"PNN, task 1 (2 of {cfg.max_tasks} columns x {pnn_width})": ("pnn", {"width": pnn_width}),
    "CSP (8 anchors, alpha-critic)": ("csp", {}),
  }
  # Every update at task index 1, but PNN's cost grows with it (columns 0..t): its last too.
  # (XLA's cost analysis takes a switch's dearest branch: both PNN rows show 8 columns' FLOPs.)
  task_ids = dict.fromkeys(variants, 1)
  variants[f"PNN, last task ({cfg.max_tasks} columns)"] = ("pnn", {"width": pnn_width})
  task_ids[f"PNN, last task ({cfg.max_tasks} columns)"] = cfg.max_tasks - 1
  calls, flops = {}, {}
  for label, (name, options) in variants.items():
    method = make_method(name, cfg, **options)
    nets = method.make_networks(obs_size, act_size, cfg)
    params = init_agent_params(nets, jax.random.key(0), obs_size, act_size, 2.0)
    state = method.init(jax.random.key(0), params)
    if name == "rewire":  # Alignment active: a task finished and its wiring cached.
      state = state._replace(cached=state.cached.at[0].set(True), finished_tasks=jnp.int32(1))
    optimizers = sac.make_optimizers(cfg.sac, method.actor_optimizer(cfg.sac))
    losses = method.make_losses(sac.losses_of(nets, cfg.sac, act_size), nets, cfg)
    update_group = sac.make_update_group(losses, optimizers, cfg.sac)
    learner = sac.init_learner(params, optimizers)

    @jax.jit
    def run(learner, key, state=state, update_group=update_group, task_id=task_ids[label]):
      def body(learner, k):
        return update_group(learner, replay, state, jnp.int32(task_id), k)

      return jax.lax.scan(body, learner, jax.random.split(key, num_updates))[0]

    calls[label] = lambda run=run, learner=learner: run(learner, jax.random.key(2))
    # XLA's cost analysis counts a scan's body once: the FLOPs of one update.
    flops[label] = _flops(run, learner, jax.random.key(2))
  seconds = {label: sec / num_updates for label, sec in time_interleaved(calls).items()}
  ft_1 = seconds["FT-1 (Dense)"]
  sample = seconds["Rewire, sample (1 of K=3)"]
  print(f"\n## Update cost per method, HalfCheetah sizes ({sizes}), {num_updates} scanned per jit")
  print("(FLOPs from XLA's cost analysis: the time ratio a compute-bound update cannot beat)")
  for label, sec in seconds.items():
    print(
      f"{label:32}{sec * 1e3:>8.2f} ms/update  {sec / ft_1:>5.2f}x FT-1  "
      f"{sec / sample:>5.2f}x sample   {flops[label] / 1e9:.2f} GFLOP "
      f"({flops[label] / flops['FT-1 (Dense)']:.2f}x FT-1's)"
    )
  return seconds


def _twin_critic_one_first_matmul(params, obs: jax.Array, action: jax.Array) -> jax.Array:
  """``TwinCritic.apply`` with both critics' first layers as one [in, 2 n] matmul (issue 20's
  first candidate for fewer, larger matmuls); timed against it, not used in training."""
  p, x = params["params"], jnp.concatenate([obs, action], axis=-1)
  first = [p[f"q_{i}"]["Dense_0"] for i in range(2)]
  kernel = jnp.concatenate([layer["kernel"] for layer in first], axis=-1)
  bias = jnp.concatenate([layer["bias"] for layer in first], axis=-1)
  hidden = jnp.split(nn.leaky_relu(x @ kernel + bias, LEAKY_SLOPE), 2, axis=-1)
  out = []
  for i, h in enumerate(hidden):
    *hidden_layers, last = [p[f"q_{i}"][f"Dense_{l}"] for l in range(1, len(p[f"q_{i}"]))]
    for layer in hidden_layers:
      h = nn.leaky_relu(h @ layer["kernel"] + layer["bias"], LEAKY_SLOPE)
    out.append((h @ last["kernel"] + last["bias"])[..., 0])
  return jnp.stack(out)


def bench_critic_matmuls(num_steps: int = 32) -> dict[str, float]:
  """The twin critic's forward and backward (to its params and to the action, as the critic
  and actor losses need), as built and with both first layers as one matmul, at the paper's
  sizes (batch 256, 3 x 256) and the cpu protocol's (batch 128, 3 x 64)."""
  from rewirejax.networks import TwinCritic

  ratios = {}
  print(f"\n## The twin critic's first layers as one matmul, {num_steps} scanned")
  for width, batch in ((256, 256), (64, 128)):
    critic = TwinCritic((width,) * 3)
    obs = jax.random.normal(jax.random.key(1), (batch, 17))
    action = jax.random.normal(jax.random.key(2), (batch, 6))
    params = critic.init(jax.random.key(0), obs, action)
    forwards = {"as built": critic.apply, "one first matmul": _twin_critic_one_first_matmul}
    np.testing.assert_allclose(
      *[f(params, obs, action) for f in forwards.values()], rtol=1e-5, atol=1e-5
    )
    calls = {}
    for label, forward in forwards.items():
      grad = jax.grad(lambda p, a, f=forward: jnp.sum(f(p, obs, a) ** 2), argnums=(0, 1))

      @jax.jit
      def run(params, action, grad=grad):
        def body(shift, _):
          return shift + 1e-6 * jnp.mean(grad(params, action + shift)[1]), None

        return jax.lax.scan(body, 0.0, None, length=num_steps)[0]

      calls[label] = lambda run=run, params=params: run(params, action)
    seconds = time_interleaved(calls)
    ratio = seconds["one first matmul"] / seconds["as built"]
    print(
      f"3 x {width}, batch {batch}: {seconds['as built'] / num_steps * 1e6:.0f} us as built, "
      f"{seconds['one first matmul'] / num_steps * 1e6:.0f} us with one first matmul "
      f"({ratio:.3f}x)"
    )
    ratios[f"3x{width}"] = ratio
  return ratios


def _halfcheetah(backend: str, episode_length: int = 1000):
  from rewirejax.envs import TaskSpec, make_task_env

  return make_task_env("halfcheetah", (TaskSpec("normal"),), backend, episode_length)


def _rewirejax_chunk_rates(cfg, env, seeds, num_chunks: int) -> list[float]:
  """Env-steps/s (all seeds) of each chunk of train_sequence, the first (compiling) excluded."""
  from rewirejax.methods import fine_tuning
  from rewirejax.train import train_sequence

  cfg = dataclasses.replace(
    cfg,
    steps_per_task=cfg.sac.warmup_transitions
    + cfg.sac.num_envs * cfg.epochs_per_chunk * num_chunks,
  )
  result = train_sequence(cfg, env, fine_tuning(), tasks=[0], seeds=seeds, progress=False)
  return [m["env_steps_per_s"] for m in result.chunk_metrics[1:]]


def _rewirejax_env_steps_per_s(cfg, env, seeds, num_chunks: int) -> float:
  """Median env-steps/s (all seeds) of train_sequence's chunks, the compiling one excluded."""
  return float(np.median(_rewirejax_chunk_rates(cfg, env, seeds, num_chunks)))


def _cheetah_run_config(
  backend: str, num_envs: int, updates_per_env_step: float, epochs_per_chunk: int
):
  """The benchmarks' SAC setting: batch 256, 2 x 256 networks, warm-up 2,560, one task."""
  from rewirejax.config import RunConfig, SACConfig

  sac = SACConfig(
    num_envs=num_envs,
    updates_per_env_step=updates_per_env_step,
    batch_size=256,
    warmup_transitions=256 * 10,
    replay_capacity=100_000,
    hidden_sizes=(256, 256),
    policy_update_delay=1,  # As brax's SAC: an actor step with every critic step.
  )
  return RunConfig(
    env_name="halfcheetah",
    backend=backend,
    epochs_per_chunk=epochs_per_chunk,
    max_tasks=1,
    num_eval_envs=8,
    sac=sac,
  )


def brax_sac_rates(
  backend: str,
  num_envs: int,
  grad_updates: int,
  num_chunks: int,
  epochs_per_chunk: int,
  hidden_sizes: tuple[int, ...] = (256, 256),
  batch_size: int = 256,
) -> list[float]:
  """brax.training's SAC on halfcheetah: env-steps/s of each of ``num_chunks`` chunks of
  ``epochs_per_chunk`` vectorised steps (``grad_updates`` per step), the compiling one
  excluded; warm-up 10 batches, buffer 100 k, 8 eval envs. brax 0.14 calls
  ``jax.device_put_replicated``, removed in jax 0.10: a shim for the benchmarks only."""
  from brax import envs as brax_envs
  from brax.training.agents.sac import networks as brax_sac_networks
  from brax.training.agents.sac import train as brax_sac
  from configs.brax import round_up

  if not hasattr(jax, "device_put_replicated"):

    def device_put_replicated(x, devices):
      return jax.tree.map(lambda a: jnp.stack([a] * len(devices)), x)

    jax.device_put_replicated = device_put_replicated

  sps = []
  warmup = round_up(batch_size * 10, num_envs)
  brax_sac.train(
    environment=brax_envs.get_environment("halfcheetah", backend=backend),
    num_timesteps=warmup + num_envs * epochs_per_chunk * num_chunks,
    episode_length=1000,
    num_envs=num_envs,
    batch_size=batch_size,
    grad_updates_per_step=grad_updates,
    min_replay_size=warmup,
    max_replay_size=100_000,
    num_evals=num_chunks + 1,
    num_eval_envs=8,
    learning_rate=3e-4,
    discounting=0.99,
    network_factory=functools.partial(
      brax_sac_networks.make_sac_networks, hidden_layer_sizes=hidden_sizes
    ),
    progress_fn=lambda step, metrics: sps.append(metrics.get("training/sps")),
  )
  measured = [x for x in sps if x]
  return measured[1:] or measured  # The first includes brax's compile.


def bench_vs_brax(backend: str = "spring", num_envs: int = 8, num_chunks: int = 4):
  """rewirejax SAC vs brax.training's SAC at equal settings (one seed, halfcheetah).

  Both: ``num_envs`` envs, batch 256, 2 x 256 networks, the same backend, and G gradient
  steps per vectorised env step (brax's ``grad_updates_per_step=G``; ours
  ``updates_per_env_step = G / num_envs``), for G = 1 and G = num_envs / 2 (the paper's 0.5
  updates per transition). Each trainer runs ``num_chunks`` timed chunks; the median and the
  range over chunks are printed (one chunk varies by up to 15 % on the 2-core CPU).
  """
  print(
    f"\n## SAC on halfcheetah ({backend}), {num_envs} envs, batch 256, 2 x 256 networks: "
    "env-steps/s, compile excluded (floor 1.0x brax, target 1.5x)"
  )
  print(
    f"{'updates per env step':>22}{'brax.training':>15}{'rewirejax':>11}{'ratio':>8}"
    "   range over chunks (brax; rewirejax)"
  )
  results = {}
  for grad_updates in (1, num_envs // 2):
    epochs_per_chunk = 1600 // grad_updates
    brax_rates = brax_sac_rates(backend, num_envs, grad_updates, num_chunks, epochs_per_chunk)
    cfg = _cheetah_run_config(backend, num_envs, grad_updates / num_envs, epochs_per_chunk)
    our_rates = _rewirejax_chunk_rates(cfg, _halfcheetah(backend), [0], num_chunks)
    brax_rate, ours = float(np.median(brax_rates)), float(np.median(our_rates))
    ratio = grad_updates / num_envs
    print(
      f"{ratio:>22.3f}{brax_rate:>15.0f}{ours:>11.0f}{ours / brax_rate:>7.2f}x"
      f"   {min(brax_rates):.0f}-{max(brax_rates):.0f}; {min(our_rates):.0f}-{max(our_rates):.0f}"
    )
    results[ratio] = {"brax": brax_rate, "rewirejax": ours}
  return results


def bench_seeds(backend: str = "spring", num_envs: int = 8, num_chunks: int = 3):
  """1 seed vs 4 seeds vmapped vs 4 seeds one after another (wall time per chunk)."""
  cfg = _cheetah_run_config(backend, num_envs, 1 / num_envs, epochs_per_chunk=100)
  env = _halfcheetah(backend)
  one = _rewirejax_env_steps_per_s(cfg, env, [0], num_chunks)
  four = _rewirejax_env_steps_per_s(cfg, env, [0, 1, 2, 3], num_chunks)
  # Four sequential seeds take 4x one seed's time for 4x the steps: the same rate as one.
  print(f"\n## Seeds (halfcheetah {backend}, {num_envs} envs each): env-steps/s over all seeds")
  print(f"1 seed              {one:>8.0f}")
  print(f"4 seeds sequential  {one:>8.0f}   (derived: 4 runs of the 1-seed job, not re-measured)")
  print(
    f"4 seeds vmapped     {four:>8.0f}   wall time vs sequential: {one / four:.2f}x "
    "(floor <= 1.05x)"
  )
  return {"one": one, "four_vmapped": four}


def bench_replay_memory():
  """Bytes of the replay buffer per seed at the default capacity, envs and 1000-step episodes,
  from its real structure, against storing both observations of every transition (the
  layout before 2026-12-02); and how many seeds' buffers fit on a 16 and an 80 GiB device."""
  from rewirejax import replay as replay_lib
  from rewirejax.config import SACConfig
  from rewirejax.types import Transition

  cfg = SACConfig()
  capacity = cfg.replay_capacity
  sizes = {"halfcheetah": (17, 6), "ant": (27, 8), "humanoid": (244, 17)}
  print(f"\n## Replay buffer per seed at {capacity:,} transitions, {cfg.num_envs} envs")
  print(f"{'env':12}{'now':>10}{'both obs':>10}{'ratio':>8}{'seeds/16 GiB':>14}{'/80 GiB':>9}")
  results = {}
  for name, (obs, act) in sizes.items():
    zero = jnp.float32(0.0)
    example = Transition(jnp.zeros(obs), jnp.zeros(act), zero, jnp.zeros(obs), zero, zero)
    shapes = jax.eval_shape(
      lambda example=example: replay_lib.init(capacity, example, cfg.num_envs, 1000)
    )
    now = replay_lib.nbytes(shapes)
    both = capacity * 4 * (2 * obs + act + 3)  # float32 obs, next obs, action, 3 scalars.
    fits = {gib: int(gib * 2**30 // now) for gib in (16, 80)}
    results[name] = {"bytes": now, "both_obs_bytes": both, "ratio": now / both, "seeds": fits}
    print(
      f"{name:12}{now / 2**30:>8.2f}Gi{both / 2**30:>8.2f}Gi{now / both:>8.2f}"
      f"{fits[16]:>14}{fits[80]:>9}"
    )
  print("(seeds: the replay buffers alone; networks, optimisers and env states not counted.)")
  return results


SECTIONS = {
  "layers": bench_layers,
  "sac_update": bench_sac_update,
  "rewire_update": bench_rewire_update,
  "critic_matmuls": bench_critic_matmuls,
  "replay_memory": bench_replay_memory,
  "vs_brax": bench_vs_brax,
  "seeds": bench_seeds,
}


def main() -> None:
  parser = argparse.ArgumentParser(description="rewirejax benchmarks (figures, not tests).")
  parser.add_argument("--only", choices=sorted(SECTIONS), nargs="*", help="sections to run")
  parser.add_argument(
    "--vs-brax-chunks", type=int, default=4, help="timed chunks per trainer in vs_brax"
  )
  parser.add_argument(
    "--update-sizes",
    choices=("paper", "cpu"),
    default="paper",
    help="rewire_update's networks: paper (batch 256, 3 x 256) or cpu (the cpu protocol's)",
  )
  args = parser.parse_args()
  if args.vs_brax_chunks < 1:
    parser.error("--vs-brax-chunks must be at least 1")
  sections = {
    **SECTIONS,
    "vs_brax": functools.partial(bench_vs_brax, num_chunks=args.vs_brax_chunks),
    "rewire_update": functools.partial(bench_rewire_update, sizes=args.update_sizes),
  }
  print(f"jax {jax.__version__}, devices: {jax.devices()}")
  for name in args.only or sections:
    sections[name]()


if __name__ == "__main__":
  main()
