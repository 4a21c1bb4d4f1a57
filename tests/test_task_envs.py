"""Sequences of different task environments (one program each) and synchronous episodes (one
reset of every env at once, on the trainer's clock), on toy envs that cost nothing to step."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import State

from rewirejax import train
from rewirejax.envs.toy import TargetReachEnv
from rewirejax.methods import fine_tuning
from rewirejax.trainer import make_trainer
from tests.test_train import SEQ


@dataclasses.dataclass(frozen=True, eq=False)
class SynchronousReach(TargetReachEnv):
  """``TargetReachEnv`` whose ``step`` never resets (done at the last step, then it keeps
  counting), with a state leaf of ``extra`` entries, so two of them differ in structure."""

  extra: int = 1
  synchronous_episodes: ClassVar[bool] = True

  def reset(self, key, task_id):
    state = super().reset(key, task_id)
    return state.replace(info={**state.info, "extra": jnp.zeros(self.extra)})

  def step(self, state, action, task_id):
    sign = 1.0 - 2.0 * (task_id % 2).astype(jnp.float32)
    target = state.info["target"]
    reward = 1.0 - jnp.mean((jnp.clip(action, -1.0, 1.0) - sign * target) ** 2)
    steps = state.info["steps"] + 1
    obs = self._obs(target, steps)
    done = (steps >= self.episode_length).astype(jnp.float32)
    info = {**state.info, "steps": steps, "truncation": done, "final_obs": obs}
    return State(None, obs, reward, done, {}, info)


def _steps_after(cfg, env, num_epochs):
  """The envs' step counters after the warm-up and ``num_epochs`` of one chunk, and the
  episodes that chunk finished."""
  trainer = make_trainer(cfg, env, fine_tuning())
  state = jax.jit(trainer.init)(jax.random.key(0))
  state = jax.jit(trainer.begin_task)(state, jnp.int32(0))
  state, _ = jax.jit(trainer.warmup)(state, jnp.int32(0))
  state, metrics = jax.jit(trainer.train_chunk)(state, jnp.int32(0), jnp.int32(num_epochs))
  return np.asarray(state.env_state.info["steps"]), int(metrics["episodes"])


def test_synchronous_episodes_reset_every_env_together_on_the_clock():
  """Episodes of 10 steps; a warm-up of 16 epochs (128 transitions / 8 envs) leaves the envs
  6 steps into their second episode, so a 20-epoch chunk ends episodes in its 4th and 14th
  epochs (2 x 8 envs) and leaves them 6 steps into the next. A clock that ignored the warm-up
  would reset in the 10th and 20th, after episodes that had already ended."""
  cfg = dataclasses.replace(SEQ, epochs_per_chunk=20)
  assert cfg.warmup_epochs == 16
  steps, episodes = _steps_after(cfg, SynchronousReach(), 20)
  assert episodes == 2 * cfg.sac.num_envs
  np.testing.assert_array_equal(steps, 6)


def test_synchronous_episodes_need_whole_episodes_per_chunk():
  with pytest.raises(ValueError, match="multiple of 10"):
    make_trainer(dataclasses.replace(SEQ, epochs_per_chunk=15), SynchronousReach(), fine_tuning())


def record_programs_built(monkeypatch) -> list:
  """The envs that ``train.make_task_program`` is called with from now on, in order."""
  built = []
  make = train.make_task_program

  def counting(cfg, env, *args, **kwargs):
    built.append(env)
    return make(cfg, env, *args, **kwargs)

  monkeypatch.setattr(train, "make_task_program", counting)
  return built


def test_envs_per_task_build_one_program_each_and_resume_exactly(tmp_path, monkeypatch):
  """Tasks 0, 1, 2 on envs A, B, A (B's state has another structure): two programs; a run
  killed inside task 1 (B) and resumed equals the uninterrupted one."""
  cfg = dataclasses.replace(SEQ, epochs_per_chunk=10, max_tasks=3)
  env_a, env_b = SynchronousReach(num_tasks=3), SynchronousReach(num_tasks=3, extra=3)
  envs = (env_a, env_b, env_a)
  kwargs = {"tasks": [0, 1, 2], "seeds": [0, 1], "eval_every_chunks": 1, "progress": False}
  built = record_programs_built(monkeypatch)
  full = train.train_sequence(cfg, envs, fine_tuning(), out_dir=tmp_path / "full", **kwargs)
  assert [id(env) for env in built] == [id(env_a), id(env_b)]
  killed = tmp_path / "killed"
  stop = cfg.num_chunks + 1  # Inside task 1, after its first chunk.
  train.train_sequence(cfg, envs, fine_tuning(), out_dir=killed, stop_after_chunks=stop, **kwargs)
  resumed = train.train_sequence(cfg, envs, fine_tuning(), out_dir=killed, resume=True, **kwargs)
  np.testing.assert_array_equal(resumed.returns, full.returns)
  np.testing.assert_array_equal(resumed.curves, full.curves)
  chex.assert_trees_all_equal(resumed.state.learner.params, full.state.learner.params)
  assert np.all(np.isfinite(full.returns))


def test_envs_per_task_must_share_their_sizes():
  envs = (TargetReachEnv(num_tasks=2), TargetReachEnv(action_size=3, num_tasks=2))
  with pytest.raises(ValueError, match="share observation and action sizes"):
    train.train_sequence(SEQ, envs, fine_tuning(), tasks=[0, 1], progress=False)
