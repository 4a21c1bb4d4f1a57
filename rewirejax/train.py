"""The one trainer: per-task resets, a fused act-insert-update scan, the method's hooks.

A seed's whole state is one ``TrainState`` pytree, and every function here is pure in it, so
many seeds are one ``jax.vmap`` (``train_sequence`` shards that axis over the devices it is
given). Per task the host loops over chunks: each chunk is one jitted call of
``epochs_per_chunk`` x (act in ``num_envs`` envs -> insert -> ``updates_per_epoch`` SGD
steps), so nothing leaves the device inside a chunk and the host sees chunk boundaries only
(progress, checkpoints).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from rewirejax import replay as replay_lib
from rewirejax import sac
from rewirejax.config import RunConfig
from rewirejax.evaluation import make_evaluate
from rewirejax.methods.base import Method
from rewirejax.networks import AgentParams, init_agent_params, sample_tanh_gaussian
from rewirejax.types import Array, EnvState, Metrics, PRNGKey, TaskEnv, TaskId, Transition


@flax.struct.dataclass
class TrainState:
  """Everything one seed's run carries between chunks."""

  learner: sac.LearnerState
  method_state: Any
  replay: replay_lib.ReplayState
  env_state: EnvState  # Batched over num_envs.
  episode_return: Array  # [num_envs] running return of the current episodes.
  key: PRNGKey
  env_steps: Array  # int32 transitions collected in the current task.


class Trainer(NamedTuple):
  """Pure per-seed functions; ``vmap`` and ``jit`` them (``train_sequence`` does)."""

  init: Callable[[PRNGKey], TrainState]
  begin_task: Callable[[TrainState, TaskId], TrainState]
  warmup: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]
  train_epoch: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]
  train_chunk: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]
  end_task: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]
  evaluate: Callable[[TrainState, TaskId, PRNGKey], Array]


def make_trainer(cfg: RunConfig, env: TaskEnv, method: Method) -> Trainer:
  """Builds the trainer's pure functions for ``env`` and ``method``."""
  cfg.validate()
  sac_cfg = cfg.sac
  networks = method.make_networks(env.observation_size, env.action_size, cfg)
  losses = sac.make_losses(networks, sac_cfg, env.action_size)
  optimizers = sac.make_optimizers(sac_cfg)
  update_group = sac.make_update_group(
    losses, optimizers, sac_cfg, method.penalty, method.mask_grads
  )
  evaluate_actor = make_evaluate(env, networks, cfg.num_eval_envs)
  groups_per_epoch = sac_cfg.updates_per_epoch // sac_cfg.policy_update_delay
  reset_envs = jax.vmap(env.reset, in_axes=(0, None))
  step_envs = jax.vmap(env.step, in_axes=(0, 0, None))

  def empty_transition() -> Transition:
    obs, act, zero = (
      jnp.zeros(env.observation_size),
      jnp.zeros(env.action_size),
      jnp.float32(0.0),
    )
    return Transition(obs, act, zero, obs, zero, zero)

  def init(key: PRNGKey) -> TrainState:
    key, key_params, key_method, key_env = jax.random.split(key, 4)
    params = init_agent_params(
      networks, key_params, env.observation_size, env.action_size, sac_cfg.init_temperature
    )
    return TrainState(
      learner=sac.init_learner(params, optimizers),
      method_state=method.init(key_method, params),
      replay=replay_lib.init(sac_cfg.replay_capacity, empty_transition()),
      env_state=reset_envs(jax.random.split(key_env, sac_cfg.num_envs), jnp.int32(0)),
      episode_return=jnp.zeros(sac_cfg.num_envs),
      key=key,
      env_steps=jnp.int32(0),
    )

  def begin_task(state: TrainState, task_id: TaskId) -> TrainState:
    """SPEC §3 per-task resets, then the method's ``begin_task``."""
    key, key_env, key_method = jax.random.split(state.key, 3)
    params = state.learner.params
    actor = params.actor["params"]
    previous = jnp.maximum(task_id - 1, 0)  # Task 0 keeps its initial head.
    actor = {
      **actor,
      "head_kernel": actor["head_kernel"].at[task_id].set(actor["head_kernel"][previous]),
      "head_bias": actor["head_bias"].at[task_id].set(actor["head_bias"][previous]),
    }
    params = AgentParams(
      actor={**params.actor, "params": actor},
      critic=params.critic,  # Kept across tasks.
      target_critic=params.critic,  # A fresh copy of the critic.
      log_alpha=jnp.log(jnp.float32(sac_cfg.init_temperature)),
    )
    params, method_state = method.begin_task(params, state.method_state, task_id, key_method)
    return state.replace(
      learner=sac.init_learner(params, optimizers),  # New Adam states.
      method_state=method_state,
      replay=replay_lib.clear(state.replay),  # A new buffer per task.
      env_state=reset_envs(jax.random.split(key_env, sac_cfg.num_envs), task_id),
      episode_return=jnp.zeros(sac_cfg.num_envs),
      key=key,
      env_steps=jnp.int32(0),
    )

  def act_and_store(state: TrainState, task_id: TaskId, key: PRNGKey) -> tuple[TrainState, Metrics]:
    """One vectorised env step with the stochastic policy; transitions go to the replay."""
    env_state = state.env_state
    mu, log_std = networks.actor.apply(state.learner.params.actor, env_state.obs, task_id)
    action, _ = sample_tanh_gaussian(mu, log_std, key)
    next_state = step_envs(env_state, action, task_id)
    truncated = next_state.info["truncation"] * next_state.done
    transition = Transition(
      obs=env_state.obs,
      action=action,
      reward=next_state.reward,
      next_obs=next_state.info["final_obs"],
      terminal=next_state.done * (1.0 - next_state.info["truncation"]),
      truncated=truncated,
    )
    episode_return = state.episode_return + next_state.reward
    metrics = {
      "episodes": jnp.sum(next_state.done),
      "episode_return_sum": jnp.sum(next_state.done * episode_return),
      "reward": jnp.mean(next_state.reward),
    }
    state = state.replace(
      replay=replay_lib.insert(state.replay, transition),
      env_state=next_state,
      episode_return=episode_return * (1.0 - next_state.done),
      env_steps=state.env_steps + sac_cfg.num_envs,
    )
    return state, metrics

  def epoch(state: TrainState, task_id: TaskId, learn: bool) -> tuple[TrainState, Metrics]:
    key, key_act, key_update = jax.random.split(state.key, 3)
    state, metrics = act_and_store(state.replace(key=key), task_id, key_act)
    if not learn:
      return state, metrics

    def one_group(learner, group_key):
      return update_group(learner, state.replay, state.method_state, task_id, group_key)

    learner, update_metrics = jax.lax.scan(
      one_group, state.learner, jax.random.split(key_update, groups_per_epoch)
    )
    return state.replace(learner=learner), {**metrics, **jax.tree.map(jnp.mean, update_metrics)}

  def run_epochs(state, task_id, num_epochs: int, learn: bool):
    state, metrics = jax.lax.scan(lambda s, _: epoch(s, task_id, learn), state, length=num_epochs)
    episodes = jnp.sum(metrics.pop("episodes"))
    returns = jnp.sum(metrics.pop("episode_return_sum"))
    summary = jax.tree.map(jnp.mean, metrics)
    summary["episodes"] = episodes
    summary["episode_return"] = jnp.where(episodes > 0, returns / jnp.maximum(episodes, 1), jnp.nan)
    return state, summary

  def warmup(state: TrainState, task_id: TaskId):
    return run_epochs(state, task_id, cfg.warmup_epochs, learn=False)

  def train_chunk(state: TrainState, task_id: TaskId):
    return run_epochs(state, task_id, cfg.epochs_per_chunk, learn=True)

  def end_task(state: TrainState, task_id: TaskId):
    key, key_method = jax.random.split(state.key)
    params, method_state, metrics = method.end_task(
      state.learner.params, state.method_state, state.replay, task_id, key_method
    )
    learner = state.learner._replace(params=params)
    return state.replace(learner=learner, method_state=method_state, key=key), metrics

  def evaluate(state: TrainState, task_id: TaskId, key: PRNGKey) -> Array:
    actor = method.eval_params(state.learner.params, state.method_state, task_id)
    return evaluate_actor(actor, task_id, key)

  def train_epoch(state: TrainState, task_id: TaskId):
    return epoch(state, task_id, learn=True)

  return Trainer(init, begin_task, warmup, train_epoch, train_chunk, end_task, evaluate)
