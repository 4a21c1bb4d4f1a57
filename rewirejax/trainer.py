"""The one trainer: per-task resets, a fused act-insert-update scan, the method's hooks.

A seed's whole state is one ``TrainState`` pytree, and every function here is pure in it, so
many seeds are one ``jax.vmap`` (``train_sequence`` shards that axis over the devices it is
given). Per task the host loops over chunks: each chunk is one jitted call of
``epochs_per_chunk`` x (act in ``num_envs`` envs -> insert -> ``updates_per_epoch`` SGD
steps), so nothing leaves the device inside a chunk and the host sees chunk boundaries only
(progress, checkpoints).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rewirejax import replay as replay_lib
from rewirejax import sac
from rewirejax.config import RunConfig
from rewirejax.evaluation import make_evaluate
from rewirejax.methods.base import Method, TrainerTools, ft_1_policy_size
from rewirejax.networks import AgentParams, head_slot, init_agent_params, sample_tanh_gaussian
from rewirejax.types import (
  Array,
  EnvState,
  Metrics,
  Params,
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


class Trainer(NamedTuple):
  """Pure per-seed functions; ``vmap`` and ``jit`` them (``train_sequence`` does)."""

  init: Callable[[PRNGKey], TrainState]
  begin_task: Callable[[TrainState, TaskId], TrainState]
  warmup: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]
  train_epoch: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]
  train_chunk: Callable[..., tuple[TrainState, Metrics]]
  end_task: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]
  evaluate: Callable[[TrainState, Array, PRNGKey, TaskId], Array]


def make_trainer(cfg: RunConfig, env: TaskEnv, method: Method) -> Trainer:
  """Builds the trainer's pure functions for ``env`` and ``method``."""
  cfg.validate()
  sac_cfg = cfg.sac
  networks = method.make_networks(env.observation_size, env.action_size, cfg)
  losses = method.wrap_losses(sac.make_losses(networks, sac_cfg, env.action_size), networks, cfg)
  optimizers = sac.make_optimizers(sac_cfg)
  update_group = sac.make_update_group(
    losses, optimizers, sac_cfg, method.penalty, method.mask_grads
  )
  evaluate_actor = make_evaluate(env, networks, cfg.num_eval_envs, cfg.num_eval_rollouts)
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

  def init_params(key: PRNGKey) -> AgentParams:
    return init_agent_params(
      networks, key, env.observation_size, env.action_size, sac_cfg.init_temperature
    )

  def finetune(params, method_state, replay, task_id, key, num_updates: int) -> AgentParams:
    """``num_updates`` SAC updates on ``replay`` (``TrainerTools``), started as the
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

  tools = TrainerTools(
    networks=networks,
    init_actor=lambda key: init_params(key).actor,
    init_critic=lambda key: init_params(key).critic,
    evaluate=evaluate_actor,
    finetune=finetune,
  )

  def init(key: PRNGKey) -> TrainState:
    key, key_params, key_method, key_env = jax.random.split(key, 4)
    params = init_params(key_params)
    return TrainState(
      learner=sac.init_learner(params, optimizers),
      method_state=method.init(key_method, params),
      replay=replay_lib.init(sac_cfg.replay_capacity, empty_transition()),
      env_state=reset_envs(jax.random.split(key_env, sac_cfg.num_envs), jnp.int32(0)),
      episode_return=jnp.zeros(sac_cfg.num_envs),
      last_return=jnp.full(sac_cfg.num_envs, jnp.nan),
      key=key,
      env_steps=jnp.int32(0),
    )

  def begin_task(state: TrainState, task_id: TaskId) -> TrainState:
    """SPEC §3 per-task resets, then the method's ``begin_task``."""
    key, key_env, key_method = jax.random.split(state.key, 3)
    params = state.learner.params
    params = AgentParams(
      actor=_copy_previous_head(params.actor, task_id),
      critic=params.critic,  # Kept across tasks.
      target_critic=params.critic,  # A fresh copy of the critic.
      log_alpha=jnp.log(jnp.float32(sac_cfg.init_temperature)),
    )
    params, method_state = method.begin_task(params, state.method_state, task_id, key_method, tools)
    return state.replace(
      learner=sac.init_learner(params, optimizers),  # New Adam states.
      method_state=method_state,
      replay=replay_lib.clear(state.replay),  # A new buffer per task.
      env_state=reset_envs(jax.random.split(key_env, sac_cfg.num_envs), task_id),
      episode_return=jnp.zeros(sac_cfg.num_envs),
      last_return=jnp.full(sac_cfg.num_envs, jnp.nan),
      key=key,
      env_steps=jnp.int32(0),
    )

  def act_and_store(state: TrainState, task_id: TaskId, key: PRNGKey) -> tuple[TrainState, Metrics]:
    """One vectorised env step with the stochastic policy; transitions go to the replay."""
    env_state = state.env_state
    key_policy, key_sample = jax.random.split(key)
    mu, log_std, method_state = method.act(
      networks, state.learner.params.actor, state.method_state, env_state.obs, task_id, key_policy
    )
    action, _ = sample_tanh_gaussian(mu, log_std, key_sample)
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
      method_state=method_state,
      replay=replay_lib.insert(state.replay, transition),
      env_state=next_state,
      episode_return=episode_return * (1.0 - next_state.done),
      last_return=jnp.where(next_state.done > 0, episode_return, state.last_return),
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

  def run_epochs(state, task_id, num_epochs, learn: bool):
    """``num_epochs`` epochs in one loop, their metrics summed in the carry. ``num_epochs`` may
    be an unbatched int32: then the loop has a dynamic trip count, and a shorter last chunk
    shares the full chunks' compile (the count is the same for every seed, so ``vmap`` keeps
    it one loop). A ``cond`` per epoch skipping those past the count measured 6 % slower on
    XLA:CPU (18.9 against 17.7 ms an epoch at the benchmark's HalfCheetah setting)."""
    metrics_shape = jax.eval_shape(lambda s: epoch(s, task_id, learn)[1], state)

    def body(_, carry):
      state, sums = carry
      state, metrics = epoch(state, task_id, learn)
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

  def warmup(state: TrainState, task_id: TaskId):
    return run_epochs(state, task_id, cfg.warmup_epochs, learn=False)

  def train_chunk(state: TrainState, task_id: TaskId, num_epochs: Array | None = None):
    """``epochs_per_chunk`` epochs, or only the first ``num_epochs`` (int32, unbatched)."""
    num_epochs = cfg.epochs_per_chunk if num_epochs is None else num_epochs
    return run_epochs(state, task_id, num_epochs, learn=True)

  def end_task(state: TrainState, task_id: TaskId):
    key, key_method = jax.random.split(state.key)
    params, method_state, metrics = method.end_task(
      state.learner.params, state.method_state, state.replay, task_id, key_method, tools
    )
    learner = state.learner._replace(params=params)
    return state.replace(learner=learner, method_state=method_state, key=key), metrics

  def evaluate(state: TrainState, task_ids: Array, keys: PRNGKey, current_task: TaskId) -> Array:
    """Mean deterministic returns [num_tasks] on ``task_ids`` [num_tasks] (vmapped), after or
    during ``current_task``; a task not begun yet is evaluated with the newest head."""

    def one_task(task_id, key):
      actor = method.eval_params(state.learner.params, state.method_state, task_id)
      actor = _head_for_unused_slot(actor, task_id, current_task)
      return evaluate_actor(actor, task_id, key)

    return jax.vmap(one_task)(task_ids, keys)

  def train_epoch(state: TrainState, task_id: TaskId):
    return epoch(state, task_id, learn=True)

  return Trainer(init, begin_task, warmup, train_epoch, train_chunk, end_task, evaluate)


def _copy_previous_head(actor: Params, task_id: TaskId) -> Params:
  """SPEC §3: a task's head slot, on its first use, starts as a copy of the previous task's
  head; task 0 and slots seen before keep theirs (a single shared head is left as it is; an
  actor without ``head_kernel``, such as PNN's columns, is returned unchanged)."""
  return _head_for_unused_slot(actor, task_id, task_id - 1)


def _head_for_unused_slot(actor: Params, task_id: TaskId, source_task: TaskId) -> Params:
  """Task ``task_id``'s head slot set to ``source_task``'s head when that slot has never been
  used by then (``0 <= source_task < task_id < num_heads``, task ids in training order);
  otherwise the actor as it is. With ``source_task = task_id - 1`` this is a task's first use
  of its slot (``_copy_previous_head``); in evaluation, with the current task, a task not begun
  yet gets the head it will start from, not its slot's random initialisation."""
  params = actor["params"]
  if "head_kernel" not in params:
    return actor
  num_heads = params["head_kernel"].shape[0]
  slot, source = head_slot(task_id, num_heads), head_slot(source_task, num_heads)
  unused = (source_task >= 0) & (source_task < task_id) & (task_id < num_heads)

  def copy(heads):
    return heads.at[slot].set(jnp.where(unused, heads[source], heads[slot]))

  heads = {name: copy(params[name]) for name in ("head_kernel", "head_bias")}
  return {**actor, "params": {**params, **heads}}


# --------------------------------------------------------------------------------------
# The host loop: tasks x chunks, seeds vmapped (and sharded over devices), checkpoints.


@dataclasses.dataclass
class SequenceResult:
  """What a continual run produces (NumPy, host side).

  Attributes:
    returns: [num_seeds, num_tasks, num_eval_tasks] ``R[seed, after_task, eval_task]``: the
      deterministic return on each evaluation task after training each task.
    curves: [num_seeds, num_tasks, num_evals] deterministic return on the task being
      trained, every ``eval_every_chunks`` chunks (empty when that is 0).
    chunk_metrics: one dict per chunk (means over seeds) as logged.
    state: the final seed-batched ``TrainState``.
    policy_params: the method's policy parameter count after the sequence (``policy_size``).
    ft_1_policy_params: FT-1's at the same sizes; model size = the ratio of the two.
  """

  returns: np.ndarray
  curves: np.ndarray
  chunk_metrics: list[dict[str, Any]]
  state: TrainState
  policy_params: int | None = None
  ft_1_policy_params: int | None = None


def seed_sharding(num_seeds: int, devices: Sequence[jax.Device] | None = None):
  """A ``NamedSharding`` that splits the leading seed axis over ``devices`` (default: every
  device of every process, see ``train_sequence``), or None for one device. The seed count
  must be a multiple of the device count.
  """
  devices = list(jax.devices() if devices is None else devices)
  if len(devices) <= 1:
    return None
  if num_seeds % len(devices):
    raise ValueError(
      f"{num_seeds} seeds cannot be split evenly over {len(devices)} devices; use a multiple "
      f"of {len(devices)} seeds or fewer devices."
    )
  mesh = jax.sharding.Mesh(np.asarray(devices), ("seeds",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))


def _over_seeds(fn, num_seeds: int, donate: bool = True, batched_args=(0, None)):
  """``jit(vmap(fn))`` over the leading seed axis of the arguments marked 0 in ``batched_args``.

  The state argument is donated, so a chunk updates the replay buffer in place instead of
  copying it. With one seed the function runs unbatched inside the jit (the seed axis is a
  free reshape): on CPU, matmuls with a batch axis of 1 measured ~20% slower.
  """
  donate_argnums = (0,) if donate else ()
  if num_seeds > 1:
    return jax.jit(jax.vmap(fn, in_axes=batched_args), donate_argnums=donate_argnums)

  def single(*args):
    args = [
      jax.tree.map(lambda x: x[0], a) if axis == 0 else a
      for a, axis in zip(args, batched_args, strict=True)
    ]
    return jax.tree.map(lambda x: x[None], fn(*args))

  return jax.jit(single, donate_argnums=donate_argnums)


def _to_host(tree: Any) -> Any:
  """NumPy copies of possibly sharded arrays. With several processes
  (``jax.distributed.initialize``) each holds only its own seeds' shards: then every process
  receives the whole array (an all-gather), so the host loop runs the same on each."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def _check_losses(metrics: dict[str, Any], seeds: Sequence[int], task_index: int, chunk: int):
  """Stops the run on a non-finite loss, naming it (the last checkpoint predates this chunk)."""
  for name, value in metrics.items():
    if "loss" in name and not np.all(np.isfinite(value)):
      bad = [s for s, v in zip(seeds, np.atleast_1d(value), strict=True) if not np.isfinite(v)]
      raise FloatingPointError(
        f"{name} became non-finite in task index {task_index}, chunk {chunk}, for seeds {bad}; "
        "check the learning rates and reward scaling. Checkpoints before this chunk are kept."
      )


_CURVE_KEYS = 1 << 30  # Learning-curve evaluations fold in after_task >= this.


def _eval_keys(seeds: Sequence[int], after_task: int, eval_tasks: Sequence[int]) -> jax.Array:
  """Keys [num_seeds, num_eval_tasks] that depend only on (seed, after_task, eval_task), so a
  resumed run evaluates exactly as an uninterrupted one."""
  return jnp.stack(
    [
      jnp.stack(
        [
          jax.random.fold_in(jax.random.fold_in(jax.random.key(s), 1_000_003 + after_task), t)
          for t in eval_tasks
        ]
      )
      for s in seeds
    ]
  )


def train_sequence(
  cfg: RunConfig,
  env: TaskEnv,
  method: Method,
  tasks: Sequence[int],
  seeds: Sequence[int] = (0,),
  *,
  eval_tasks: Sequence[int] | None = None,
  out_dir: str | pathlib.Path | None = None,
  resume: bool = False,
  devices: Sequence[jax.Device] | None = None,
  eval_every_chunks: int = 0,
  checkpoint_every_chunks: int = 1,
  progress: bool = True,
  stop_after_chunks: int | None = None,
  lane_overrides: Callable[[TrainState], TrainState] | None = None,
) -> SequenceResult:
  """Trains ``method`` on ``tasks`` in order, all ``seeds`` in one vmapped job.

  Args:
    cfg: the run's configuration.
    env: the task environment; ``tasks`` and ``eval_tasks`` index its task ids.
    method: the continual-learning method.
    tasks: task ids in training order.
    seeds: one PRNG seed per vmapped run.
    eval_tasks: task ids evaluated after every task (default: the distinct ``tasks``).
    out_dir: where checkpoints, ``metrics.jsonl``, ``manifest.json`` and ``result.json`` go.
    resume: continue from the newest checkpoint in ``out_dir`` (finished chunks and tasks are
      skipped; the result equals that of an uninterrupted run).
    devices: shard the seed axis over these devices (default: ``jax.devices()``, which after
      ``jax.distributed.initialize()`` are every process's: each process then runs this same
      call, computes its own devices' seeds, and receives every seed's results; process 0
      alone writes the logs and results, and checkpoints are written by all, through orbax).
    eval_every_chunks: evaluate the current task every this many chunks (0: never).
    checkpoint_every_chunks: checkpoint every this many chunks (0: at task ends only).
    progress: show a progress bar.
    stop_after_chunks: stop (as if killed) after this many chunks of this call; for tests.
    lane_overrides: edits the freshly initialised seed-batched state (traced, inside the jitted
      initialisation), e.g. a different coefficient per lane (``rewirejax.sweep``); seeds may
      then repeat across lanes.

  Returns:
    A ``SequenceResult``.
  """
  from rewirejax import logging as logs
  from rewirejax.checkpoint import Checkpointer

  tasks, seeds = [int(t) for t in tasks], [int(s) for s in seeds]
  eval_tasks = sorted(set(tasks)) if eval_tasks is None else [int(t) for t in eval_tasks]
  for t in {*tasks, *eval_tasks}:
    if not 0 <= t < min(env.num_tasks, cfg.max_tasks):
      raise ValueError(f"task id {t} is outside [0, {min(env.num_tasks, cfg.max_tasks)}).")
  if not seeds or (lane_overrides is None and len(set(seeds)) != len(seeds)):
    raise ValueError(f"seeds must be distinct and non-empty, got {seeds}.")
  if resume and out_dir is None:
    raise ValueError("resume=True needs out_dir.")
  trainer = make_trainer(cfg, env, method)
  sharding = seed_sharding(len(seeds), devices)

  begin_task, warmup = (
    _over_seeds(trainer.begin_task, len(seeds)),
    _over_seeds(trainer.warmup, len(seeds)),
  )
  train_chunk = _over_seeds(trainer.train_chunk, len(seeds), batched_args=(0, None, None))
  end_task = _over_seeds(trainer.end_task, len(seeds))
  evaluate = _over_seeds(
    trainer.evaluate, len(seeds), donate=False, batched_args=(0, None, 0, None)
  )

  def init_seeds():  # Built where it lives: with several processes each makes its shards.
    state = jax.vmap(trainer.init)(jnp.stack([jax.random.key(s) for s in seeds]))
    return state if lane_overrides is None else lane_overrides(state)

  state = jax.jit(init_seeds, out_shardings=sharding)()
  num_chunks = cfg.num_chunks
  returns = np.full((len(seeds), len(tasks), len(eval_tasks)), np.nan)
  num_evals = num_chunks // eval_every_chunks if eval_every_chunks else 0
  curves = np.full((len(seeds), len(tasks), num_evals), np.nan)
  history: list[dict[str, Any]] = []
  position = {"task_index": 0, "chunk": 0}  # Next chunk to run; chunk 0 starts the task.

  out = None if out_dir is None else pathlib.Path(out_dir)
  writer = jax.process_index() == 0  # Of several processes, one writes files and progress.
  progress = progress and writer
  checkpointer = metrics_log = None
  if out is not None:
    out.mkdir(parents=True, exist_ok=True)
    checkpointer = Checkpointer(out / "checkpoints")
    if resume and checkpointer.latest_step() is not None:
      state, saved = checkpointer.restore(state)
      position = saved["position"]
      returns = np.asarray(saved["returns"], dtype=float).reshape(returns.shape)
      curves = np.asarray(saved["curves"], dtype=float).reshape(curves.shape)
      history = saved["history"]
  if out is not None and writer:
    logs.write_json_atomic(
      out / "manifest.json",
      logs.manifest(
        cfg,
        method=method.name,
        tasks=tasks,
        eval_tasks=eval_tasks,
        seeds=seeds,
        env=type(env).__name__,
        num_chunks_per_task=num_chunks,
      ),
    )
    done_until = (position["task_index"], position["chunk"] - 1) if resume else None
    metrics_log = logs.MetricsLog(out / "metrics.jsonl", keep_until=done_until)

  def save(step: int) -> None:
    if checkpointer is not None:
      progress_state = {
        "position": position,
        "returns": logs.to_jsonable(returns),
        "curves": logs.to_jsonable(curves),
        "history": history,
      }
      checkpointer.save(step, state, logs.to_jsonable(progress_state))

  bar = logs.progress_bar(
    len(tasks) * num_chunks, position["task_index"] * num_chunks + position["chunk"], progress
  )
  chunks_run = 0
  last_eval = None  # The latest learning-curve point (mean over seeds), shown on the bar.
  for task_index in range(position["task_index"], len(tasks)):
    task = jnp.int32(tasks[task_index])
    if position["chunk"] == 0:
      state = begin_task(state, task)
      state, _ = warmup(state, task)
    for chunk in range(position["chunk"], num_chunks):
      if stop_after_chunks is not None and chunks_run >= stop_after_chunks:
        bar.close()
        return SequenceResult(returns, curves, history, state)
      start = time.perf_counter()
      state, metrics = train_chunk(state, task, jnp.int32(cfg.epochs_in_chunk(chunk)))
      metrics = _to_host(metrics)
      seconds = time.perf_counter() - start
      _check_losses(metrics, seeds, task_index, chunk)
      steps = len(seeds) * cfg.epochs_in_chunk(chunk) * cfg.sac.num_envs
      record = {
        "task_index": task_index,
        "task": tasks[task_index],
        "chunk": chunk,
        "env_steps_per_s": steps / seconds,
        "seconds": seconds,
        "episode_return_per_seed": metrics["episode_return"],
        **{k: float(np.nanmean(v)) if np.any(np.isfinite(v)) else None for k, v in metrics.items()},
      }
      if eval_every_chunks and (chunk + 1) % eval_every_chunks == 0:
        # Their own key range: an end-of-task evaluation never reuses a curve point's episodes.
        after = _CURVE_KEYS + 10_000 * task_index + chunk
        keys = _eval_keys(seeds, after, [tasks[task_index]])
        curve_point = _to_host(evaluate(state, task[None], keys, task))[:, 0]
        curves[:, task_index, (chunk + 1) // eval_every_chunks - 1] = curve_point
        last_eval = float(np.mean(curve_point))
        record["eval_return_per_seed"] = curve_point
        record["eval_return"] = last_eval
      history.append(logs.to_jsonable(record))
      position = {"task_index": task_index, "chunk": chunk + 1}
      if metrics_log is not None:
        metrics_log.write(record)
      if checkpoint_every_chunks and (chunk + 1) % checkpoint_every_chunks == 0:
        save(task_index * (num_chunks + 1) + chunk + 1)
      chunks_run += 1
      bar.update(1)
      bar.set_postfix(
        task=tasks[task_index],
        steps_per_s=f"{record['env_steps_per_s']:.0f}",
        recent_return=record["recent_return"],
        eval_return=last_eval,
      )
    state, _ = end_task(state, task)
    keys = _eval_keys(seeds, task_index, eval_tasks)  # Every eval task in one vmapped call.
    returns[:, task_index] = _to_host(evaluate(state, jnp.asarray(eval_tasks), keys, task))
    if metrics_log is not None:  # R's row as it comes: [seeds, eval tasks].
      end = {"task_index": task_index, "task": tasks[task_index], "chunk": num_chunks}
      metrics_log.write({**end, "end_of_task_returns_per_seed": returns[:, task_index]})
    if progress:
      bar.write(
        f"After task {tasks[task_index]}: return per eval task (mean over seeds) "
        + " ".join(f"{r:.0f}" for r in np.mean(returns[:, task_index], axis=0))
      )
    position = {"task_index": task_index + 1, "chunk": 0}
    save((task_index + 1) * (num_chunks + 1))
  bar.close()
  one_seed = jax.tree.map(
    lambda x: x[0], _to_host((state.learner.params.actor, state.method_state))
  )
  policy_params = method.policy_size(*one_seed, len(tasks))
  ft_1_policy_params = ft_1_policy_size(env.observation_size, env.action_size, cfg)
  if out is not None and writer:
    logs.write_json_atomic(
      out / "result.json",
      {
        "returns": returns,
        "curves": curves,
        "tasks": tasks,
        "eval_tasks": eval_tasks,
        "seeds": seeds,
        "method": method.name,
        "policy_params": policy_params,
        "ft_1_policy_params": ft_1_policy_params,
      },
    )
  if checkpointer is not None:
    checkpointer.close()
  return SequenceResult(returns, curves, history, state, policy_params, ft_1_policy_params)
