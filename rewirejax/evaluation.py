"""Deterministic evaluation: a jitted rollout of N environments on any (traced) task id."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from rewirejax.networks import SACNetworks
from rewirejax.types import Array, Params, PRNGKey, TaskEnv, TaskId


def make_evaluate(
  env: TaskEnv, networks: SACNetworks, num_envs: int, num_rollouts: int = 1
) -> Callable[[Params, TaskId, PRNGKey], Array]:
  """Returns ``evaluate(actor_params, task_id, key) -> mean episode return`` (scalar).

  Runs ``num_rollouts`` sequential rounds (``make_evaluate_round``, keys
  ``split(key, num_rollouts)``) of ``num_envs`` parallel episodes; the reference used 512 x 10.
  """
  evaluate_round = make_evaluate_round(env, networks, num_envs)

  def evaluate(actor_params: Params, task_id: TaskId, key: PRNGKey) -> Array:
    def one_round(_, round_key):
      return None, evaluate_round(actor_params, task_id, round_key)

    _, returns = jax.lax.scan(one_round, None, jax.random.split(key, num_rollouts))
    return jnp.mean(returns)

  return evaluate


def make_evaluate_round(
  env: TaskEnv, networks: SACNetworks, num_envs: int
) -> Callable[[Params, TaskId, PRNGKey], Array]:
  """One round: ``num_envs`` episodes of the deterministic policy ``tanh(mu)``, one full
  episode each (``env.episode_length`` steps); rewards after an episode's first ``done`` are
  ignored. Returns the mean episode return, or the mean of the env's
  ``episode_score(return, final_state)`` where it has one (Continual World: success)."""
  score = getattr(env, "episode_score", None)

  def evaluate_round(actor_params: Params, task_id: TaskId, key: PRNGKey) -> Array:
    states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), task_id)

    def step(carry, _):
      states, alive, returns = carry
      mu, _ = networks.actor.apply(actor_params, states.obs, task_id)
      states = jax.vmap(env.step, in_axes=(0, 0, None))(states, jnp.tanh(mu), task_id)
      returns = returns + alive * states.reward
      alive = alive * (1.0 - states.done)
      return (states, alive, returns), None

    init = (states, jnp.ones(num_envs), jnp.zeros(num_envs))
    (states, _, returns), _ = jax.lax.scan(step, init, length=env.episode_length)
    return jnp.mean(returns if score is None else score(returns, states))

  return evaluate_round
