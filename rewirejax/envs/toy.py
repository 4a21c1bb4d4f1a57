"""A tiny pure-JAX task environment with a known optimum, for fast algorithm tests.

Each episode draws a target ``g`` uniformly in [-0.8, 0.8]^d; the observation is ``g`` and
the elapsed fraction of the episode; the reward is ``1 - mean_i (a_i - s_k g_i)^2`` where ``s_k``
is the task's sign (odd tasks flip the target). The optimal return is ``episode_length`` (10);
a uniformly random policy scores about ``(1 - 1/3 - 0.64/3) * episode_length`` (4.5), and the
policy of the other sign about ``(1 - 4 * 0.64/3) * episode_length`` (1.5). Returns are positive,
so they can be normalised as the paper does. Implements ``types.TaskEnv``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from brax.envs.base import State

from rewirejax.types import Array, EnvState, PRNGKey, TaskId


@dataclasses.dataclass(frozen=True)
class TargetReachEnv:
  action_size: int = 2
  num_tasks: int = 2
  episode_length: int = 10

  @property
  def observation_size(self) -> int:
    return self.action_size + 1

  def _obs(self, target: Array, steps: Array) -> Array:
    return jnp.append(target, steps.astype(jnp.float32) / self.episode_length)

  def reset(self, key: PRNGKey, task_id: TaskId) -> EnvState:
    del task_id
    key, key_target = jax.random.split(key)
    target = jax.random.uniform(key_target, (self.action_size,), minval=-0.8, maxval=0.8)
    obs, zero = self._obs(target, jnp.int32(0)), jnp.float32(0.0)
    info = {
      "key": key,
      "target": target,
      "steps": jnp.int32(0),
      "truncation": zero,
      "final_obs": obs,
    }
    return State(None, obs, zero, zero, {}, info)

  def step(self, state: EnvState, action: Array, task_id: TaskId) -> EnvState:
    target = state.info["target"]
    sign = 1.0 - 2.0 * (task_id % 2).astype(jnp.float32)
    reward = 1.0 - jnp.mean((jnp.clip(action, -1.0, 1.0) - sign * target) ** 2)
    steps = state.info["steps"] + 1
    final_obs = self._obs(target, steps)
    done = (steps >= self.episode_length).astype(jnp.float32)
    fresh = self.reset(state.info["key"], task_id)
    ended = done > 0
    info = {
      "key": fresh.info["key"],
      "target": jnp.where(ended, fresh.info["target"], target),
      "steps": jnp.where(ended, 0, steps),
      "truncation": done,  # The only way an episode ends here is the time limit.
      "final_obs": final_obs,
    }
    return State(None, jnp.where(ended, fresh.obs, final_obs), reward, done, {}, info)
