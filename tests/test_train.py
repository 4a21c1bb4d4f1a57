"""The trainer: fused scan vs Python loop, one trace for all tasks, vmapped seeds, learning."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewirejax.config import RunConfig, SACConfig
from rewirejax.envs.toy import TargetReachEnv
from rewirejax.methods import fine_tuning
from rewirejax.train import make_trainer

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
  chex.assert_trees_all_equal(fused.replay.data, looped.replay.data)
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


def test_begin_task_resets_per_task_state(trainer, warm_state):
  trained, _ = jax.jit(trainer.train_chunk)(warm_state, jnp.int32(0))
  fresh = jax.jit(trainer.begin_task)(trained, jnp.int32(1))
  params = fresh.learner.params
  assert int(fresh.replay.size) == 0 and int(fresh.env_steps) == 0
  np.testing.assert_allclose(jnp.exp(params.log_alpha), TINY_SAC.init_temperature, rtol=1e-6)
  chex.assert_trees_all_equal(params.target_critic, params.critic)
  chex.assert_trees_all_equal(params.critic, trained.learner.params.critic)  # Kept.
  heads = params.actor["params"]["head_kernel"]
  np.testing.assert_array_equal(heads[1], trained.learner.params.actor["params"]["head_kernel"][0])
  assert int(fresh.learner.critic_steps) == 0


def test_sac_learns_the_toy_task():
  cfg = dataclasses.replace(TINY, epochs_per_chunk=50)
  trainer = make_trainer(cfg, TargetReachEnv(), fine_tuning())
  task = jnp.int32(1)
  state = jax.jit(trainer.init)(jax.random.key(0))
  state = jax.jit(trainer.begin_task)(state, task)
  evaluate = jax.jit(trainer.evaluate)
  before = float(evaluate(state, task, jax.random.key(1)))
  state, _ = jax.jit(trainer.warmup)(state, task)
  chunk = jax.jit(trainer.train_chunk)
  for _ in range(cfg.num_chunks):
    state, metrics = chunk(state, task)
  after = float(evaluate(state, task, jax.random.key(1)))
  # Optimum 0; a uniformly random policy scores about -5.5 over 10 steps.
  assert before < -1.0
  assert after > -0.5, (before, after)
  assert np.isfinite(float(metrics["critic/loss"]))


@pytest.mark.parametrize(
  ("change", "message"),
  [
    ({"steps_per_task": -5}, "steps_per_task"),
    ({"sac": dataclasses.replace(TINY_SAC, batch_size=10_000)}, "larger than the replay"),
    ({"sac": dataclasses.replace(TINY_SAC, updates_per_env_step=0.3)}, "whole number"),
    ({"sac": dataclasses.replace(TINY_SAC, policy_update_delay=3)}, "multiple of"),
  ],
)
def test_bad_configs_raise(change, message):
  with pytest.raises(ValueError, match=message):
    make_trainer(dataclasses.replace(TINY, **change), TargetReachEnv(), fine_tuning())
