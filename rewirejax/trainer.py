"""The one trainer: per-task resets, a fused act-insert-update scan, the method's hooks.

A seed's whole state is one ``TrainState`` pytree, and every function here is pure in it, so
many seeds are one ``jax.vmap`` (``rewirejax.train`` batches, jits and shards them). Each
chunk is one call of ``epochs_per_chunk`` x (act in ``num_envs`` envs -> insert ->
``updates_per_epoch`` SGD steps), so nothing leaves the device inside a chunk.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from rewirejax import replay as replay_lib
from rewirejax import sac
from rewirejax.config import RunConfig
from rewirejax.evaluation import make_evaluate
from rewirejax.methods.base import POLICY_PARAMS, Method, TaskContext
from rewirejax.networks import AgentParams, init_agent_params, sample_tanh_gaussian
from rewirejax.types import (
  Array,
  EnvState,
  Metrics,
  PRNGKey,
  TaskEnv,
  TaskId,
  Transition,
)


@flax.struct.dataclass
class TrainState:
  """Everything one seed's run carries between chunks."""

  learner: sac.LearnerState
  method_state: Any
  replay: replay_lib.ReplayState
  env_state: EnvState  # Batched over num_envs.
  episode_return: Array  # [num_envs] running return of the current episodes.
  last_return: Array  # [num_envs] return of each env's last finished episode (NaN: none yet).
  key: PRNGKey
  env_steps: Array  # int32 transitions collected in the current task.
  tasks_begun: Array  # int32 tasks of the sequence begun so far, the current one included.


class Trainer(NamedTuple):
  """Pure per-seed functions; ``vmap`` and ``jit`` them (``train_sequence`` does)."""

  init: Callable[[PRNGKey], TrainState]
  begin_task: Callable[[TrainState, TaskId], TrainState]
  warmup: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]
  train_epoch: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]  # No env clock.
  train_chunk: Callable[..., tuple[TrainState, Metrics]]
  end_task: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]
  evaluate: Callable[[TrainState, Array, PRNGKey, TaskId], Array]


class TrainerParts(NamedTuple):
  """What the trainer's functions share, built once by ``make_trainer`` (static Python
  objects, not traced state); ``context`` gives the task hooks' ``TaskContext``."""

  cfg: RunConfig
  env: TaskEnv
  method: Method
  networks: Any  # The method's SACNetworks.
  optimizers: sac.Optimizers
  update_group: Callable[..., tuple[sac.LearnerState, Metrics]]
  evaluate: Callable[..., Array]
  context: Callable[..., TaskContext]


def make_trainer(cfg: RunConfig, env: TaskEnv, method: Method) -> Trainer:
  """Builds the trainer's pure functions for ``env`` and ``method``."""
  cfg.validate()
  if _synchronous(env) and cfg.epochs_per_chunk % env.episode_length:
    raise ValueError(
      f"{type(env).__name__}'s episodes all end together every {env.episode_length} steps, so "
      f"epochs_per_chunk must be a multiple of {env.episode_length}, got {cfg.epochs_per_chunk}."
    )
  networks = method.make_networks(env.observation_size, env.action_size, cfg)
  losses = method.make_losses(sac.losses_of(networks, cfg.sac, env.action_size), networks, cfg)
  optimizers = sac.make_optimizers(cfg.sac, method.actor_optimizer(cfg.sac))
  update_group = sac.make_update_group(losses, optimizers, cfg.sac)
  evaluate = make_evaluate(env, networks, cfg.num_eval_envs, cfg.num_eval_rollouts)

  def context(task_id, num_tasks, key, replay) -> TaskContext:
    return TaskContext(
      task_id=task_id,
      num_tasks=num_tasks,
      key=key,
      replay=replay,
      networks=networks,
      init_actor=lambda key: _init_params(cfg, env, networks, key).actor,
      init_critic=lambda key: _init_params(cfg, env, networks, key).critic,
      evaluate=evaluate,
      finetune=functools.partial(_finetune, cfg.sac, optimizers, update_group),
    )

  parts = TrainerParts(cfg, env, method, networks, optimizers, update_group, evaluate, context)

  def train_chunk(state: TrainState, task_id: TaskId, num_epochs: Array | None = None):
    """``epochs_per_chunk`` epochs, or only the first ``num_epochs`` (int32, unbatched)."""
    num_epochs = cfg.epochs_per_chunk if num_epochs is None else num_epochs
    return _run_epochs(parts, state, task_id, num_epochs, True, cfg.warmup_epochs)

  return Trainer(
    init=functools.partial(_init, parts),
    begin_task=functools.partial(_begin_task, parts),
    warmup=lambda state, task_id: _run_epochs(parts, state, task_id, cfg.warmup_epochs, False, 0),
    train_epoch=lambda state, task_id: _epoch(parts, state, task_id, learn=True),
    train_chunk=train_chunk,
    end_task=functools.partial(_end_task, parts),
    evaluate=functools.partial(_evaluate, parts),
  )


def _init_params(cfg: RunConfig, env: TaskEnv, networks, key: PRNGKey) -> AgentParams:
  sizes = (env.observation_size, env.action_size)
  return init_agent_params(networks, key, *sizes, cfg.sac.init_temperature)


def _finetune(
  sac_cfg, optimizers, update_group, params, method_state, replay, task_id, key, num_updates: int
) -> AgentParams:
  """``num_updates`` SAC updates on ``replay`` (``TaskContext.finetune``), started as the
  reference's retraining: fresh Adam states, the temperature back at its initial value and
  the target critic a copy of the critic."""
  num_groups = max(num_updates // sac_cfg.policy_update_delay, 0)
  start = params._replace(
    target_critic=params.critic,
    log_alpha=jnp.log(jnp.full_like(params.log_alpha, sac_cfg.init_temperature)),
  )
  learner, _ = jax.lax.scan(
    lambda learner, k: update_group(learner, replay, method_state, task_id, k),
    sac.init_learner(start, optimizers),
    jax.random.split(key, num_groups),
  )
  return learner.params


def _empty_transition(env: TaskEnv) -> Transition:
  obs, act, zero = jnp.zeros(env.observation_size), jnp.zeros(env.action_size), jnp.float32(0.0)
  return Transition(obs, act, zero, obs, zero, zero)


def _reset_envs(parts: TrainerParts, key: PRNGKey, task_id: TaskId):
  keys = jax.random.split(key, parts.cfg.sac.num_envs)
  return jax.vmap(parts.env.reset, in_axes=(0, None))(keys, task_id)


def _init(parts: TrainerParts, key: PRNGKey) -> TrainState:
  sac_cfg = parts.cfg.sac
  key, key_params, key_method, key_env = jax.random.split(key, 4)
  params = _init_params(parts.cfg, parts.env, parts.networks, key_params)
  return TrainState(
    learner=sac.init_learner(params, parts.optimizers),
    method_state=parts.method.init(key_method, params),
    replay=replay_lib.init(
      sac_cfg.replay_capacity,
      _empty_transition(parts.env),
      batch=sac_cfg.num_envs,
      episode_length=parts.env.episode_length,
    ),
    env_state=_reset_envs(parts, key_env, jnp.int32(0)),
    episode_return=jnp.zeros(sac_cfg.num_envs),
    last_return=jnp.full(sac_cfg.num_envs, jnp.nan),
    key=key,
    env_steps=jnp.int32(0),
    tasks_begun=jnp.int32(0),
  )


def _begin_task(parts: TrainerParts, state: TrainState, task_id: TaskId) -> TrainState:
  """SPEC §3 per-task resets, then the method's ``begin_task``."""
  sac_cfg = parts.cfg.sac
  key, key_env, key_method = jax.random.split(state.key, 3)
  params = state.learner.params
  params = AgentParams(
    actor=parts.networks.carry_head(params.actor, task_id, task_id - 1),  # SPEC §3.
    critic=params.critic,  # Kept across tasks.
    target_critic=params.critic,  # A fresh copy of the critic.
    log_alpha=jnp.log(jnp.float32(sac_cfg.init_temperature)),
  )
  replay = replay_lib.clear(state.replay)  # A new buffer per task.
  tasks_begun = state.tasks_begun + 1
  params, method_state = parts.method.begin_task(
    params, state.method_state, parts.context(task_id, tasks_begun, key_method, replay)
  )
  return state.replace(
    learner=sac.init_learner(params, parts.optimizers),  # New Adam states.
    method_state=method_state,
    replay=replay,
    env_state=_reset_envs(parts, key_env, task_id),
    episode_return=jnp.zeros(sac_cfg.num_envs),
    last_return=jnp.full(sac_cfg.num_envs, jnp.nan),
    key=key,
    env_steps=jnp.int32(0),
    tasks_begun=tasks_begun,
  )


def _act_and_store(
  parts: TrainerParts, state: TrainState, task_id: TaskId, key: PRNGKey, learn: bool
) -> tuple[TrainState, Metrics]:
  """One vectorised env step with the method's stochastic policy (in the warm-up, with
  ``warmup_actions="uniform"``, uniform actions in [-1, 1]); transitions go to the replay.
  The policy acts either way, so the method's acting state advances alike."""
  env_state = state.env_state
  key_policy, key_sample = jax.random.split(key)
  mu, log_std, method_state = parts.method.act(
    parts.networks,
    state.learner.params.actor,
    state.method_state,
    env_state.obs,
    task_id,
    key_policy,
  )
  action, _ = sample_tanh_gaussian(mu, log_std, key_sample)
  if not learn and parts.cfg.sac.warmup_actions == "uniform":
    uniform_key = jax.random.fold_in(key_sample, 1)
    action = jax.random.uniform(uniform_key, action.shape, action.dtype, -1.0, 1.0)
  next_state = jax.vmap(parts.env.step, in_axes=(0, 0, None))(env_state, action, task_id)
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
    method_state=method_state,
    replay=replay_lib.insert(state.replay, transition),
    env_state=next_state,
    episode_return=episode_return * (1.0 - next_state.done),
    last_return=jnp.where(next_state.done > 0, episode_return, state.last_return),
    env_steps=state.env_steps + parts.cfg.sac.num_envs,
  )
  return state, metrics


def _epoch(
  parts: TrainerParts, state: TrainState, task_id: TaskId, learn: bool
) -> tuple[TrainState, Metrics]:
  """Act in every env once, then (if ``learn``) ``updates_per_epoch`` SGD steps."""
  sac_cfg = parts.cfg.sac
  key, key_act, key_update = jax.random.split(state.key, 3)
  state, metrics = _act_and_store(parts, state.replace(key=key), task_id, key_act, learn)
  if not learn:
    return state, metrics

  def one_group(learner, group_key):
    return parts.update_group(learner, state.replay, state.method_state, task_id, group_key)

  groups_per_epoch = sac_cfg.updates_per_epoch // sac_cfg.policy_update_delay
  learner, update_metrics = jax.lax.scan(
    one_group, state.learner, jax.random.split(key_update, groups_per_epoch)
  )
  return state.replace(learner=learner), {**metrics, **jax.tree.map(jnp.mean, update_metrics)}


def _synchronous(env: TaskEnv) -> bool:
  return getattr(env, "synchronous_episodes", False)


def _reset_if(parts: TrainerParts, state: TrainState, task_id: TaskId, episodes_end: Array):
  """Every env reset at once where ``episodes_end`` (an unbatched bool, so under ``vmap`` this
  stays a branch and the reset runs once an episode, not at every step)."""

  def reset(state):
    key, key_env = jax.random.split(state.key)
    return state.replace(env_state=_reset_envs(parts, key_env, task_id), key=key)

  return jax.lax.cond(episodes_end, reset, lambda state: state, state)


def _run_epochs(parts, state: TrainState, task_id, num_epochs, learn: bool, first_epoch: int):
  """``num_epochs`` epochs in one loop, their metrics summed in the carry. ``num_epochs`` may
  be an unbatched int32: then the loop has a dynamic trip count, and a shorter last chunk
  shares the full chunks' compile (the count is the same for every seed, so ``vmap`` keeps it
  one loop). A ``cond`` per epoch skipping those past the count measured 6 % slower on
  XLA:CPU (18.9 against 17.7 ms an epoch at the benchmark's HalfCheetah setting).

  With synchronous episodes (``TaskEnv.synchronous_episodes``) the loop's epoch index, plus
  ``first_epoch`` (the loop's first epoch, counted from the task's resets), is the episode
  clock that resets the envs."""
  epoch = functools.partial(_epoch, parts, task_id=task_id, learn=learn)
  metrics_shape = jax.eval_shape(lambda s: epoch(s)[1], state)
  length = parts.env.episode_length

  def body(i, carry):
    state, sums = carry
    state, metrics = epoch(state)
    if _synchronous(parts.env):
      state = _reset_if(parts, state, task_id, (first_epoch + i) % length == length - 1)
    return state, jax.tree.map(jnp.add, sums, metrics)

  zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), metrics_shape)
  state, sums = jax.lax.fori_loop(0, num_epochs, body, (state, zeros))
  episodes, returns = sums.pop("episodes"), sums.pop("episode_return_sum")
  summary = jax.tree.map(lambda x: x / jnp.maximum(num_epochs, 1), sums)
  summary["episodes"] = episodes
  summary["episode_return"] = jnp.where(episodes > 0, returns / jnp.maximum(episodes, 1), jnp.nan)
  # Recent return: the mean of each env's last finished episode (NaN before the first).
  summary["recent_return"] = jnp.mean(state.last_return)
  return state, summary


def _end_task(parts: TrainerParts, state: TrainState, task_id: TaskId):
  """The method's ``end_task``; its metrics must give the model size (``POLICY_PARAMS``)."""
  key, key_method = jax.random.split(state.key)
  context = parts.context(task_id, state.tasks_begun, key_method, state.replay)
  params, method_state, metrics = parts.method.end_task(
    state.learner.params, state.method_state, context
  )
  if POLICY_PARAMS not in metrics:
    raise ValueError(
      f"{parts.method.name}'s end_task must report {POLICY_PARAMS!r} (its model size) in its "
      "metrics; see rewirejax.methods.base.Method."
    )
  learner = state.learner._replace(params=params)
  return state.replace(learner=learner, method_state=method_state, key=key), metrics


def _evaluate(
  parts: TrainerParts, state: TrainState, task_ids: Array, keys: PRNGKey, current_task: TaskId
) -> Array:
  """Mean deterministic returns [num_tasks] on ``task_ids`` [num_tasks] (vmapped), after or
  during ``current_task``; a task not begun yet is evaluated with the newest head."""

  def one_task(task_id, key):
    actor = parts.method.eval_params(state.learner.params, state.method_state, task_id)
    actor = parts.networks.carry_head(actor, task_id, current_task)
    return parts.evaluate(actor, task_id, key)

  return jax.vmap(one_task)(task_ids, keys)
