"""The trainer: fused scan vs Python loop, one trace for all tasks, vmapped seeds, learning."""

import dataclasses
import json
import os
import pathlib
import socket
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewirejax.checkpoint import Checkpointer
from rewirejax.config import RunConfig, SACConfig
from rewirejax.envs.toy import TargetReachEnv
from rewirejax.methods import fine_tuning
from rewirejax.train import (
  RunRecord,
  evaluation_keys,
  make_task_program,
  run_task,
  seed_sharding,
  train_sequence,
)
from rewirejax.trainer import make_trainer

TINY_SAC = SACConfig(
  batch_size=64,
  num_envs=8,
  updates_per_env_step=0.5,
  warmup_transitions=128,
  replay_capacity=5000,
  hidden_sizes=(64, 64),
  actor_lr=1e-3,
  critic_lr=1e-3,
  alpha_lr=1e-3,
  init_temperature=0.1,
  discount=0.9,
  policy_update_delay=2,
  target_update_delay=2,
)
TINY = RunConfig(
  steps_per_task=8 * 400, max_tasks=2, epochs_per_chunk=4, num_eval_envs=32, sac=TINY_SAC
)


@pytest.fixture(scope="module")
def trainer():
  return make_trainer(TINY, TargetReachEnv(), fine_tuning())


@pytest.fixture(scope="module")
def warm_state(trainer):
  state = jax.jit(trainer.init)(jax.random.key(0))
  state = jax.jit(trainer.begin_task)(state, jnp.int32(0))
  state, _ = jax.jit(trainer.warmup)(state, jnp.int32(0))
  return state


def test_fused_chunk_equals_python_loop_of_epochs(trainer, warm_state):
  task = jnp.int32(0)
  fused, _ = jax.jit(trainer.train_chunk)(warm_state, task)
  epoch = jax.jit(trainer.train_epoch)
  looped = warm_state
  for _ in range(TINY.epochs_per_chunk):
    looped, _ = epoch(looped, task)
  chex.assert_trees_all_close(fused.learner.params, looped.learner.params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_equal(fused.replay, looped.replay)
  assert int(fused.env_steps) == int(looped.env_steps)


def test_one_trace_for_all_task_ids(trainer, warm_state):
  @jax.jit
  @chex.assert_max_traces(n=1)
  def chunk(state, task_id):
    return trainer.train_chunk(state, task_id)

  state = warm_state
  for task in (0, 1, 0):
    state, _ = chunk(state, jnp.int32(task))


def test_vmapped_seeds_equal_single_runs(trainer):
  def run(key):
    state = trainer.init(key)
    state = trainer.begin_task(state, jnp.int32(1))
    state, _ = trainer.warmup(state, jnp.int32(1))
    state, metrics = trainer.train_chunk(state, jnp.int32(1))
    return state.learner.params, metrics["critic/loss"]

  keys = jax.random.split(jax.random.key(3), 3)
  batched = jax.jit(jax.vmap(run))(keys)
  single = jax.jit(run)
  for i in range(3):
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, i=i: x[i], batched), single(keys[i]), rtol=1e-5, atol=1e-6
    )


def _task_headed_mlp(observation_size, action_size, cfg):
  from rewirejax.networks import make_sac_networks

  return make_sac_networks(
    observation_size, action_size, cfg.max_tasks, cfg.sac.hidden_sizes, permuted=False
  )


def test_begin_task_resets_per_task_state():
  trainer = make_trainer(TINY, TargetReachEnv(), fine_tuning(make_networks=_task_headed_mlp))
  state = jax.jit(trainer.init)(jax.random.key(0))
  state = jax.jit(trainer.begin_task)(state, jnp.int32(0))
  state, _ = jax.jit(trainer.warmup)(state, jnp.int32(0))
  trained, _ = jax.jit(trainer.train_chunk)(state, jnp.int32(0))
  fresh = jax.jit(trainer.begin_task)(trained, jnp.int32(1))
  params = fresh.learner.params
  assert int(fresh.replay.size) == 0 and int(fresh.env_steps) == 0
  np.testing.assert_allclose(jnp.exp(params.log_alpha), TINY_SAC.init_temperature, rtol=1e-6)
  chex.assert_trees_all_equal(params.target_critic, params.critic)
  chex.assert_trees_all_equal(params.critic, trained.learner.params.critic)  # Kept.
  heads = params.actor["params"]["head_kernel"]
  np.testing.assert_array_equal(heads[1], trained.learner.params.actor["params"]["head_kernel"][0])
  assert int(fresh.learner.critic_steps) == 0


def test_head_slot_copied_only_on_first_use():
  from rewirejax.networks import carry_task_head

  heads = jnp.arange(2.0)[:, None, None] * jnp.ones((2, 3, 4))  # Slot s is filled with s.
  actor = {"params": {"head_kernel": heads, "head_bias": jnp.arange(2.0)[:, None] * jnp.ones(4)}}

  def slots_after(task):
    out = carry_task_head(actor, jnp.int32(task), jnp.int32(task - 1))["params"]
    return [float(out["head_kernel"][s, 0, 0]) for s in range(2)]

  assert slots_after(0) == [0.0, 1.0]  # Task 0 keeps its initial head.
  assert slots_after(1) == [0.0, 0.0]  # Slot 1's first use: a copy of task 0's head.
  assert slots_after(2) == [0.0, 1.0]  # Task 2 reuses slot 0 (a repeat): nothing is copied.
  single = {"params": {"head_kernel": heads[:1], "head_bias": jnp.ones((1, 4))}}
  chex.assert_trees_all_equal(carry_task_head(single, jnp.int32(3), jnp.int32(2)), single)


def test_a_task_not_begun_is_evaluated_with_the_newest_head():
  from rewirejax.networks import carry_task_head

  heads = jnp.arange(4.0)[:, None, None] * jnp.ones((4, 3, 2))  # Slot s is filled with s.
  actor = {"params": {"head_kernel": heads, "head_bias": jnp.arange(4.0)[:, None] * jnp.ones(2)}}

  def head_used(task, current):
    out = carry_task_head(actor, jnp.int32(task), jnp.int32(current))["params"]
    slot = task % 4
    return float(out["head_kernel"][slot, 0, 0]), float(out["head_bias"][slot, 0])

  assert head_used(3, 1) == (1.0, 1.0)  # Slot 3 unused after task 1: task 1's head.
  assert head_used(1, 1) == (1.0, 1.0)  # The current task: its own.
  assert head_used(0, 1) == (0.0, 0.0)  # A finished task: its own.
  assert head_used(5, 4) == (1.0, 1.0)  # Task 5 reuses slot 1 (used by task 1): its own.
  single = {"params": {"head_kernel": heads[:1], "head_bias": jnp.ones((1, 2))}}
  chex.assert_trees_all_equal(carry_task_head(single, jnp.int32(3), jnp.int32(0)), single)


def test_sac_learns_the_toy_task():
  cfg = dataclasses.replace(TINY, epochs_per_chunk=50)
  trainer = make_trainer(cfg, TargetReachEnv(), fine_tuning())
  task = jnp.int32(1)
  state = jax.jit(trainer.init)(jax.random.key(0))
  state = jax.jit(trainer.begin_task)(state, task)
  evaluate = jax.jit(trainer.evaluate)
  before = float(evaluate(state, task[None], jax.random.key(1)[None], task)[0])
  state, _ = jax.jit(trainer.warmup)(state, task)
  chunk = jax.jit(trainer.train_chunk)
  for _ in range(cfg.num_chunks):
    state, metrics = chunk(state, task)
  after = float(evaluate(state, task[None], jax.random.key(1)[None], task)[0])
  # Optimum 10; a uniformly random policy scores about 4.5 over 10 steps.
  assert before < 9.0
  assert after > 9.5, (before, after)
  assert np.isfinite(float(metrics["critic/loss"]))


@pytest.mark.parametrize(
  ("change", "message"),
  [
    ({"steps_per_task": -5}, "steps_per_task"),
    ({"sac": dataclasses.replace(TINY_SAC, batch_size=10_000)}, "larger than the replay"),
    ({"sac": dataclasses.replace(TINY_SAC, updates_per_env_step=0.3)}, "whole number"),
    ({"sac": dataclasses.replace(TINY_SAC, policy_update_delay=3)}, "multiple of"),
    ({"sac": dataclasses.replace(TINY_SAC, warmup_actions="random")}, "warmup_actions"),
  ],
)
def test_bad_configs_raise(change, message):
  with pytest.raises(ValueError, match=message):
    make_trainer(dataclasses.replace(TINY, **change), TargetReachEnv(), fine_tuning())


SEQ = dataclasses.replace(TINY, steps_per_task=8 * 40, epochs_per_chunk=8)  # 3 chunks a task.


@pytest.mark.parametrize("warmup_actions", ["policy", "uniform"])
def test_uniform_warmup_actions_do_not_depend_on_the_policy(warmup_actions):
  """The warm-up's 128 stored actions from one state, under two different actors: with
  "uniform" they are the same, spread as U(-1, 1) (mean 0, variance 1/3); with "policy"
  they follow each actor."""
  cfg = dataclasses.replace(SEQ, sac=dataclasses.replace(TINY_SAC, warmup_actions=warmup_actions))
  trainer = make_trainer(cfg, TargetReachEnv(), fine_tuning())
  state = jax.jit(trainer.begin_task)(jax.jit(trainer.init)(jax.random.key(0)), jnp.int32(0))
  other_actor = jax.jit(trainer.init)(jax.random.key(1)).learner.params.actor
  other = state.replace(
    learner=state.learner._replace(params=state.learner.params._replace(actor=other_actor))
  )
  warmup = jax.jit(trainer.warmup)
  n = cfg.sac.warmup_transitions
  actions, other_actions = (
    np.asarray(warmup(s, jnp.int32(0))[0].replay.action[:n]) for s in (state, other)
  )
  if warmup_actions == "uniform":
    np.testing.assert_array_equal(actions, other_actions)
    assert np.abs(actions).max() <= 1.0
    assert abs(actions.mean()) < 0.1 and abs(actions.var() - 1 / 3) < 0.05, actions.var()
  else:
    assert not np.allclose(actions, other_actions)


def test_train_sequence_returns_matrix_and_files(tmp_path):
  result = train_sequence(
    SEQ,
    TargetReachEnv(),
    fine_tuning(),
    tasks=[0, 1],
    seeds=[0, 1],
    out_dir=tmp_path,
    eval_every_chunks=1,
    progress=False,
  )
  assert result.returns.shape == (2, 2, 2) and np.all(np.isfinite(result.returns))
  assert result.curves.shape == (2, 2, SEQ.num_chunks) and np.all(np.isfinite(result.curves))
  assert len(result.chunk_metrics) == 2 * SEQ.num_chunks
  for name in ("manifest.json", "metrics.jsonl", "result.json"):
    assert (tmp_path / name).stat().st_size > 0
  records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  # Per task: one record per chunk with its learning-curve point, then the task's row of R.
  assert len(records) == 2 * (SEQ.num_chunks + 1)
  for task_index in range(2):
    per_task = records[task_index * (SEQ.num_chunks + 1) :][: SEQ.num_chunks + 1]
    assert [r["chunk"] for r in per_task] == list(range(SEQ.num_chunks + 1))
    curve = [r["eval_return_per_seed"] for r in per_task[:-1]]
    np.testing.assert_allclose(np.transpose(curve), result.curves[:, task_index], rtol=1e-6)
    np.testing.assert_allclose(
      per_task[-1]["end_of_task_returns_per_seed"], result.returns[:, task_index], rtol=1e-6
    )
    for record in per_task[:-1]:  # Each metric per seed, and their mean beside them.
      assert "critic/loss" in record["per_seed"] and "episode_return" not in record["per_seed"]
      for name, values in record["per_seed"].items():
        assert len(values) == 2, name
        finite = [v for v in values if v is not None]
        if finite:
          np.testing.assert_allclose(np.mean(finite), record[name], rtol=1e-5)
  manifest = json.loads((tmp_path / "manifest.json").read_text())
  assert manifest["versions"]["jax"] == jax.__version__ and manifest["seeds"] == [0, 1]


@pytest.mark.parametrize("stop_after", [1, SEQ.num_chunks, SEQ.num_chunks + 1])
def test_resumed_run_equals_uninterrupted_run(tmp_path, stop_after):
  env, method = TargetReachEnv(), fine_tuning()
  kwargs = {"tasks": [0, 1], "seeds": [3, 4], "eval_every_chunks": 1, "progress": False}
  full = train_sequence(SEQ, env, method, out_dir=tmp_path / "full", **kwargs)
  killed = tmp_path / "killed"
  train_sequence(SEQ, env, method, out_dir=killed, stop_after_chunks=stop_after, **kwargs)
  resumed = train_sequence(SEQ, env, method, out_dir=killed, resume=True, **kwargs)
  chex.assert_trees_all_close(
    resumed.state.learner.params, full.state.learner.params, rtol=1e-6, atol=1e-7
  )
  np.testing.assert_allclose(resumed.returns, full.returns, rtol=1e-6)
  np.testing.assert_allclose(resumed.curves, full.curves, rtol=1e-6)
  lines = (killed / "metrics.jsonl").read_text().splitlines()
  # Nothing logged twice or lost: each task's chunks, then its row of R.
  assert [json.loads(x)["chunk"] for x in lines] == list(range(SEQ.num_chunks + 1)) * 2


def test_sharded_seeds_equal_unsharded(tmp_path):
  """Two fake CPU devices need a fresh process (XLA reads the flag at start-up)."""
  script = f"""
import os, json
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, numpy as np
from tests.test_train import SEQ
from rewirejax.envs.toy import TargetReachEnv
from rewirejax.methods import fine_tuning
from rewirejax.train import train_sequence
assert len(jax.devices()) == 2
runs = {{}}
for name, devices in (("sharded", jax.devices()), ("single", jax.devices()[:1])):
  r = train_sequence(SEQ, TargetReachEnv(), fine_tuning(), tasks=[0], seeds=[0, 1],
                     devices=devices, progress=False)
  leaf = jax.tree.leaves(r.state.learner.params)[0]
  runs[name] = {{"returns": r.returns.tolist(), "devices": len(leaf.sharding.device_set),
                "params": [np.asarray(x).ravel()[:50].tolist()
                           for x in jax.tree.leaves(r.state.learner.params)]}}
json.dump(runs, open({str(tmp_path / "runs.json")!r}, "w"))
"""
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  root = pathlib.Path(__file__).resolve().parents[1]
  proc = subprocess.run(
    [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  runs = json.loads((tmp_path / "runs.json").read_text())
  assert runs["sharded"]["devices"] == 2 and runs["single"]["devices"] == 1
  np.testing.assert_allclose(runs["sharded"]["returns"], runs["single"]["returns"], rtol=1e-5)
  # Each device holds one seed in the sharded run, two seeds share one device in the other, so
  # XLA compiles different matmul kernels: float32 rounding differs, about 1e-4 relative on
  # a few of the sampled parameters after 96 Adam steps.
  for a, b in zip(runs["sharded"]["params"], runs["single"]["params"], strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


_TWO_PROCESS_SCRIPT = """
import json, sys
import jax, numpy as np
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from tests.test_train import SEQ
from rewirejax.envs.toy import TargetReachEnv
from rewirejax.methods import fine_tuning
from rewirejax.train import train_sequence
r = train_sequence(SEQ, TargetReachEnv(), fine_tuning(), tasks=[0, 1], seeds=[0, 1],
                   out_dir=sys.argv[3], progress=False)
leaf = jax.tree.leaves(r.state.learner.params)[0]
json.dump({"returns": r.returns.tolist(), "devices": len(leaf.sharding.device_set),
           "local_devices": len(leaf.sharding.addressable_devices),
           "episode_returns": [m["episode_return_per_seed"] for m in r.chunk_metrics]},
          open(sys.argv[4], "w"))
"""


def test_two_processes_equal_one(tmp_path):
  """``jax.distributed.initialize`` in two processes of one CPU device each (gloo for the
  cross-process gathers), as on two hosts: each computes one seed, both get every seed's
  results, process 0 alone writes the files, and the checkpoint both wrote restores here."""
  with socket.socket() as probe:  # A free port for the coordinator.
    probe.bind(("localhost", 0))
    address = f"localhost:{probe.getsockname()[1]}"
  root = pathlib.Path(__file__).resolve().parents[1]
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  out = tmp_path / "run"
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-c",
        _TWO_PROCESS_SCRIPT,
        address,
        str(i),
        str(out),
        str(tmp_path / f"{i}.json"),
      ],
      cwd=root,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  for proc in procs:
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
  runs = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]
  single = train_sequence(
    SEQ, TargetReachEnv(), fine_tuning(), tasks=[0, 1], seeds=[0, 1], progress=False
  )
  for run in runs:
    assert run["devices"] == 2 and run["local_devices"] == 1
    np.testing.assert_allclose(run["returns"], single.returns, rtol=1e-4)
    want = [m["episode_return_per_seed"] for m in single.chunk_metrics]
    np.testing.assert_allclose(run["episode_returns"], want, rtol=1e-4)
  result = json.loads((out / "result.json").read_text())
  np.testing.assert_allclose(result["returns"], single.returns, rtol=1e-4)
  lines = (out / "metrics.jsonl").read_text().splitlines()  # One writer: no line twice.
  assert [json.loads(x)["chunk"] for x in lines] == list(range(SEQ.num_chunks + 1)) * 2
  restored, saved = Checkpointer(out / "checkpoints").restore(single.state)
  assert saved["position"] == {"task_index": 2, "chunk": 0}
  chex.assert_trees_all_close(
    restored.learner.params, single.state.learner.params, rtol=1e-3, atol=1e-4
  )


def test_train_sequence_rejects_bad_arguments():
  with pytest.raises(ValueError, match="outside"):
    train_sequence(SEQ, TargetReachEnv(), fine_tuning(), tasks=[5], progress=False)
  with pytest.raises(ValueError, match="split evenly"):
    seed_sharding(3, [jax.devices()[0]] * 2)


def test_shorter_last_chunk_equals_loop_and_budget_is_exact(trainer, warm_state):
  task = jnp.int32(0)
  partial, metrics = jax.jit(trainer.train_chunk)(warm_state, task, jnp.int32(3))
  looped = warm_state
  for _ in range(3):
    looped, _ = jax.jit(trainer.train_epoch)(looped, task)
  chex.assert_trees_all_close(partial.learner.params, looped.learner.params, rtol=1e-5, atol=1e-6)
  assert int(partial.env_steps) == int(looped.env_steps)
  assert np.isfinite(float(metrics["critic/loss"]))

  cfg = dataclasses.replace(TINY, steps_per_task=8 * 37, epochs_per_chunk=8)
  assert cfg.num_chunks == 3 and [cfg.epochs_in_chunk(c) for c in range(3)] == [8, 8, 5]
  result = train_sequence(cfg, TargetReachEnv(), fine_tuning(), tasks=[0], progress=False)
  assert int(result.state.env_steps[0]) == 37 * 8
  # Curve points sit at the steps collected so far, the short last chunk included.
  collected = cfg.warmup_epochs * 8 + 8 * np.cumsum([cfg.epochs_in_chunk(c) for c in range(3)])
  assert [cfg.env_steps_after_chunk(c) for c in range(3)] == collected.tolist()
  assert collected[-1] == int(result.state.env_steps[0])
  assert cfg.curve_steps(1, 3).tolist() == collected.tolist()
  assert cfg.curve_steps(2, 1).tolist() == [collected[1]]


def test_head_init_does_not_depend_on_task_slots():
  from rewirejax.networks import make_sac_networks

  bounds = []
  for num_heads in (1, 8):
    nets = make_sac_networks(3, 2, num_heads=num_heads, hidden_sizes=(64,), permuted=False)
    params = nets.actor.init(jax.random.key(0), jnp.zeros((1, 3)), jnp.int32(0))
    bounds.append(float(jnp.max(jnp.abs(params["params"]["head_kernel"]))))
  # U(-1/sqrt(64), 1/sqrt(64)), as PyTorch's Linear: the max is close to 0.125 either way.
  np.testing.assert_allclose(bounds, 0.125, rtol=0.05)


def test_evaluation_averages_rollout_rounds():
  from rewirejax.evaluation import make_evaluate, make_evaluate_round
  from rewirejax.networks import make_sac_networks

  env = TargetReachEnv()
  nets = make_sac_networks(env.observation_size, env.action_size, num_heads=2, hidden_sizes=(8,))
  actor = nets.actor.init(jax.random.key(0), jnp.zeros((1, env.observation_size)), jnp.int32(0))
  one_round = make_evaluate_round(env, nets, num_envs=4)
  key, task = jax.random.key(5), jnp.int32(1)
  rounds = [float(one_round(actor, task, k)) for k in jax.random.split(key, 2)]
  two_rounds = make_evaluate(env, nets, num_envs=4, num_rollouts=2)(actor, task, key)
  np.testing.assert_allclose(two_rounds, np.mean(rounds), rtol=1e-6)
  assert not np.isclose(rounds[0], rounds[1])  # Rounds see different episodes.


def test_non_finite_loss_stops_the_run_with_a_clear_error():
  cfg = dataclasses.replace(TINY, sac=dataclasses.replace(TINY_SAC, reward_scaling=float("nan")))
  with pytest.raises(
    FloatingPointError, match=r"loss became non-finite in task index 0, chunk 0, for seeds \[0, 1\]"
  ):
    train_sequence(cfg, TargetReachEnv(), fine_tuning(), tasks=[0], seeds=[0, 1], progress=False)


def test_evaluation_keys_depend_on_their_arguments_alone_and_purposes_never_meet():
  end = evaluation_keys([0, 1], "end_of_task", 2, [0, 3])
  assert end.shape == (2, 2)
  # The documented scheme: fold_in(fold_in(key(seed), data), eval_task).
  expected = jax.random.fold_in(jax.random.fold_in(jax.random.key(1), 1_000_003 + 2), 3)
  np.testing.assert_array_equal(jax.random.key_data(end[1, 1]), jax.random.key_data(expected))
  np.testing.assert_array_equal(
    jax.random.key_data(end), jax.random.key_data(evaluation_keys([0, 1], "end_of_task", 2, [0, 3]))
  )
  data = lambda k: {tuple(np.asarray(jax.random.key_data(x)).ravel()) for x in k.ravel()}  # noqa: E731
  ends = set().union(*(data(evaluation_keys([0], "end_of_task", t, [0])) for t in range(8)))
  curves = set().union(
    *(data(evaluation_keys([0], "curve", t, [0], c)) for t in range(8) for c in range(20))
  )
  assert len(ends) == 8 and len(curves) == 8 * 20 and not ends & curves
  with pytest.raises(ValueError, match="Unknown purpose 'eval'"):
    evaluation_keys([0], "eval", 0, [0])
  with pytest.raises(ValueError, match="chunk must be in"):
    evaluation_keys([0], "curve", 0, [0], chunk=10_000)


def test_run_task_called_directly_equals_the_driver(tmp_path):
  """The per-task program without the driver or any callback: task 0's row of R and the
  state after it are the driver's."""
  env, method, seeds = TargetReachEnv(), fine_tuning(), [0, 1]
  driven = train_sequence(SEQ, env, method, tasks=[0], seeds=seeds, progress=False)
  program = make_task_program(SEQ, env, method, seeds)
  record = RunRecord([0], [0], seeds, np.full((2, 1, 1), np.nan), np.full((2, 1, 0), np.nan))
  state, row, _ = run_task(program, SEQ, program.init(), record, task_index=0)
  np.testing.assert_array_equal(row, driven.returns[:, 0])
  chex.assert_trees_all_equal(state.learner.params, driven.state.learner.params)


def test_a_resumed_record_counts_the_earlier_sessions_seconds():
  """``RunRecord.seconds`` goes into every checkpoint, and a restored record adds this
  session's seconds to it (a checkpoint from before the field counts from the resume)."""
  blank = {"returns": np.zeros((1, 1, 1)), "curves": np.zeros((1, 1, 0))}
  record = RunRecord([0], [0], [0], **blank)
  saved = record.jsonable()
  assert 0.0 <= saved["seconds"] < 60.0
  resumed = RunRecord([0], [0], [0], **blank)
  resumed.restore({**saved, "seconds": 1234.5})
  assert 1234.5 <= resumed.seconds < 1234.5 + 60.0
  del saved["seconds"]
  older = RunRecord([0], [0], [0], **blank)
  older.restore(saved)
  assert older.seconds < 60.0


def test_a_checkpoint_of_another_layout_is_refused_in_one_line(tmp_path):
  """A run resumed from a checkpoint whose state has other shapes (an older version's
  replay, say) names the checkpoint and what to do, instead of orbax's tensorstore dump."""
  checkpointer = Checkpointer(tmp_path / "checkpoints")
  checkpointer.save(3, {"obs": jnp.zeros((4, 2)), "next_obs": jnp.zeros((4, 2))}, {"chunk": 1})
  with pytest.raises(ValueError, match=r"checkpoints/3 does not fit this run's state") as error:
    checkpointer.restore({"obs": jnp.zeros((5, 2)), "next_obs": jnp.zeros((4, 2))})
  assert "delete" in str(error.value) and "\n" not in str(error.value)


def test_zero_size_arrays_and_keys_are_checkpointed(tmp_path):
  """Orbax refuses arrays with no elements (Meta-World's empty height field): they round-trip
  through the template, next to typed keys and ordinary arrays."""
  state = {
    "model": {"hfield": jnp.zeros((3, 0)), "mass": jnp.arange(3.0), "unused": None},
    "key": jax.random.split(jax.random.key(7), 3),
  }
  checkpointer = Checkpointer(tmp_path / "checkpoints")
  checkpointer.save(1, state, {"chunk": 0})
  restored, progress = checkpointer.restore(jax.tree.map(jnp.zeros_like, state))
  assert progress == {"chunk": 0} and restored["model"]["unused"] is None
  assert restored["model"]["hfield"].shape == (3, 0)
  np.testing.assert_array_equal(restored["model"]["mass"], state["model"]["mass"])
  np.testing.assert_array_equal(
    jax.random.key_data(restored["key"]), jax.random.key_data(state["key"])
  )
