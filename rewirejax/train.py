"""A continual run: one jitted, seed-batched program per task environment, a per-task run, and
a thin driver whose callbacks checkpoint, log, show progress, stop on a non-finite loss and
take the learning-curve points.

The pieces, innermost first:

* ``make_task_program``: the trainer's pure per-seed functions (``rewirejax.trainer``),
  vmapped over seeds, jitted and sharded. One program serves every task id of one environment
  (the Brax scenarios: one compile for all tasks); a sequence whose tasks are different
  environment structures builds one program per structure.
* ``run_task``: one task from a given chunk on, then the evaluation of every task after it.
  With no callbacks it is a function of its arguments alone.
* ``train_sequence``: the driver. It restores a checkpoint, runs the tasks in order through
  ``run_task`` and writes the result; everything else it does is a callback (``Callback``).

Evaluation keys come from ``evaluation_keys`` alone, so a resumed run evaluates exactly as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rewirejax import logging as logs
from rewirejax.config import RunConfig
from rewirejax.methods.base import POLICY_PARAMS, Method, ft_1_policy_size
from rewirejax.trainer import TrainState, make_trainer
from rewirejax.types import Array, Metrics, TaskEnv, TaskId

# --------------------------------------------------------------------------------------------
# Keys.

_END_OF_TASK_KEYS = 1_000_003  # + task index: the end-of-task evaluations (a row of R).
_CURVE_KEYS = _END_OF_TASK_KEYS + (1 << 30)  # + 10,000 x task index + chunk: curve points.
_MAX_CHUNKS = 10_000


def evaluation_keys(
  seeds: Sequence[int], purpose: str, task_index: int, eval_tasks: Sequence[int], chunk: int = 0
) -> jax.Array:
  """Keys [num_seeds, num_eval_tasks] of one evaluation, a function of these arguments alone.

  ``purpose`` is ``"end_of_task"`` (the row of R after task index ``task_index``) or
  ``"curve"`` (the learning-curve point after ``chunk`` of that task). The two key ranges never
  meet, so a curve point never reuses an end-of-task evaluation's episodes.
  """
  if purpose == "end_of_task":
    data = _END_OF_TASK_KEYS + task_index
  elif purpose == "curve":
    if not 0 <= chunk < _MAX_CHUNKS:
      raise ValueError(f"chunk must be in [0, {_MAX_CHUNKS}), got {chunk}.")
    data = _CURVE_KEYS + _MAX_CHUNKS * task_index + chunk
  else:
    raise ValueError(f"Unknown purpose {purpose!r}; choices: ['end_of_task', 'curve'].")
  per_seed = [jax.random.fold_in(jax.random.key(s), data) for s in seeds]
  return jnp.stack([jnp.stack([jax.random.fold_in(k, t) for t in eval_tasks]) for k in per_seed])


# --------------------------------------------------------------------------------------------
# The program of one task environment.


class TaskProgram(NamedTuple):
  """The jitted functions of one task environment, batched over the run's seeds.

  Attributes:
    init: () -> the seed-batched ``TrainState`` at the start of the run.
    begin_task: (state, task_id) -> state after the per-task resets and the warm-up.
    run_chunk: (state, task_id, num_epochs int32) -> (state, metrics [seeds]).
    end_task: (state, task_id) -> (state after the method's end of the task, its metrics
      [seeds, ...], e.g. Rewire's mode returns and whether it rolled back).
    evaluate_tasks: (state, task_ids [n], keys [seeds, n], current task_id) -> returns
      [seeds, n].
  """

  init: Callable[[], TrainState]
  begin_task: Callable[[TrainState, TaskId], TrainState]
  run_chunk: Callable[[TrainState, TaskId, Array], tuple[TrainState, Metrics]]
  end_task: Callable[[TrainState, TaskId], tuple[TrainState, Metrics]]
  evaluate_tasks: Callable[[TrainState, Array, jax.Array, TaskId], Array]


def make_task_program(
  cfg: RunConfig,
  env: TaskEnv,
  method: Method,
  seeds: Sequence[int],
  sharding: jax.sharding.Sharding | None = None,
  lane_overrides: Callable[[TrainState], TrainState] | None = None,
) -> TaskProgram:
  """The ``TaskProgram`` of ``env``; ``lane_overrides`` edits the freshly initialised
  seed-batched state inside the jitted initialisation (``rewirejax.sweep``)."""
  trainer = make_trainer(cfg, env, method)
  n = len(seeds)
  begin, warmup = _over_seeds(trainer.begin_task, n), _over_seeds(trainer.warmup, n)
  end = _over_seeds(trainer.end_task, n)
  evaluate = _over_seeds(trainer.evaluate, n, donate=False, batched_args=(0, None, 0, None))

  def init_seeds():  # Built where it lives: with several processes each makes its shards.
    state = jax.vmap(trainer.init)(jnp.stack([jax.random.key(s) for s in seeds]))
    return state if lane_overrides is None else lane_overrides(state)

  return TaskProgram(
    init=jax.jit(init_seeds, out_shardings=sharding),
    begin_task=lambda state, task: warmup(begin(state, task), task)[0],
    run_chunk=_over_seeds(trainer.train_chunk, n, batched_args=(0, None, None)),
    end_task=end,
    evaluate_tasks=lambda state, *args: evaluate(_policy_part(state), *args),
  )


def _policy_part(state: TrainState) -> TrainState:
  """The state without what evaluation never reads (the envs and the replay), so one compiled
  evaluation serves states of every task environment."""
  return state.replace(env_state=None, replay=None)


class TaskPrograms:
  """A run's programs: one ``TaskProgram`` per distinct task environment, built when a task
  first needs it. ``envs[task_id]`` is the env of each task id; the Brax scenarios give one env
  for all (one compile), Continual World one per Meta-World task."""

  def __init__(self, build: Callable[[TaskEnv], TaskProgram], envs: Sequence[TaskEnv]):
    self.build, self.envs = build, tuple(envs)
    self._built: dict[int, TaskProgram] = {}

  def __getitem__(self, task_id: int) -> TaskProgram:
    env = self.envs[task_id]
    if id(env) not in self._built:
      self._built[id(env)] = self.build(env)
    return self._built[id(env)]

  def evaluate_row(self, state, eval_tasks: Sequence[int], keys, current: TaskId) -> np.ndarray:
    """Returns [seeds, len(eval_tasks)] on ``eval_tasks`` (keys [seeds, len(eval_tasks)]):
    one vmapped call per program over its tasks."""
    groups: dict[int, list[int]] = {}
    for column, task in enumerate(eval_tasks):
      groups.setdefault(id(self.envs[task]), []).append(column)
    row = np.full(keys.shape, np.nan)
    for columns in groups.values():
      tasks = jnp.asarray([eval_tasks[c] for c in columns])
      program = self[eval_tasks[columns[0]]]
      row[:, columns] = _to_host(program.evaluate_tasks(state, tasks, keys[:, columns], current))
    return row


def _as_programs(program: TaskProgram | TaskPrograms, num_tasks: int) -> TaskPrograms:
  """``program`` for every task id (the program itself stands for the env)."""
  if isinstance(program, TaskPrograms):
    return program
  return TaskPrograms(lambda _: program, [program] * num_tasks)


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


# --------------------------------------------------------------------------------------------
# One task, and the callbacks that watch it.


@dataclasses.dataclass
class RunRecord:
  """The host side of a run, checkpointed with its state: where it stands and what it has
  measured so far.

  Attributes:
    tasks, eval_tasks, seeds: the run's task ids in training order, its evaluation task ids
      and its seeds.
    returns: [seeds, tasks, eval tasks] R, NaN where not measured yet.
    curves: [seeds, tasks, curve points] the learning curves, NaN where not measured yet.
    history: one JSON record per finished chunk.
    position: the next chunk to run, ``{"task_index", "chunk"}`` (chunk 0 starts the task).
    seconds_before: wall seconds of the sessions before this one, up to their last
      checkpoint (``seconds`` adds this session's).
    policy_params: [seeds] the model size the method reported at its last task's end.
  """

  tasks: list[int]
  eval_tasks: list[int]
  seeds: list[int]
  returns: np.ndarray
  curves: np.ndarray
  history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  position: dict[str, int] = dataclasses.field(
    default_factory=lambda: {"task_index": 0, "chunk": 0}
  )
  seconds_before: float = 0.0
  policy_params: list[int] | None = None
  started: float = dataclasses.field(default_factory=time.perf_counter)

  @property
  def seconds(self) -> float:
    """Wall seconds of the run over every session (a chunk redone after a kill counts twice)."""
    return self.seconds_before + time.perf_counter() - self.started

  def jsonable(self) -> dict[str, Any]:
    """What a checkpoint keeps of the record besides the state."""
    fields = {"position": self.position, "returns": self.returns, "curves": self.curves}
    sizes = {"policy_params": self.policy_params}
    return logs.to_jsonable({**fields, "history": self.history, "seconds": self.seconds, **sizes})

  def restore(self, saved: dict[str, Any]) -> None:
    self.position = saved["position"]
    self.returns = np.asarray(saved["returns"], dtype=float).reshape(self.returns.shape)
    self.curves = np.asarray(saved["curves"], dtype=float).reshape(self.curves.shape)
    self.history = saved["history"]
    self.seconds_before = float(saved.get("seconds", 0.0))  # Absent in older checkpoints.
    self.policy_params = saved.get("policy_params")
    self.started = time.perf_counter()


class ChunkEvent(NamedTuple):
  """A finished chunk: ``record`` is its JSON record (callbacks may add fields to it)."""

  task_index: int
  chunk: int
  state: TrainState
  metrics: dict[str, np.ndarray]  # [seeds] per metric, on the host.
  record: dict[str, Any]


class Callback:
  """Host-side hooks of ``train_sequence``, called in order; the defaults do nothing."""

  def on_chunk(self, event: ChunkEvent) -> None:
    del event

  def on_task_end(self, task_index: int, state: TrainState, metrics: Metrics) -> None:
    """After the task's end and its row of R; ``metrics``: the method's end-of-task ones."""
    del task_index, state, metrics

  def close(self) -> None:
    pass


def run_task(
  programs: TaskProgram | TaskPrograms,
  cfg: RunConfig,
  state: TrainState,
  run: RunRecord,
  task_index: int,
  start_chunk: int = 0,
  callbacks: Sequence[Callback] = (),
) -> tuple[TrainState, np.ndarray]:
  """Trains task ``run.tasks[task_index]`` from chunk ``start_chunk`` (0: from its resets) to
  its end, then evaluates every one of ``run.eval_tasks``.

  Args:
    programs: the run's ``TaskPrograms``, or one ``TaskProgram`` for every task.

  Returns:
    The state after the task's end, the row of R [seeds, eval tasks] and the method's
    end-of-task metrics ([seeds, ...] per name, on the host).
  """
  programs = _as_programs(programs, max([*run.tasks, *run.eval_tasks]) + 1)
  program = programs[run.tasks[task_index]]
  task = jnp.int32(run.tasks[task_index])
  if start_chunk == 0:
    state = program.begin_task(state, task)
  for chunk in range(start_chunk, cfg.num_chunks):
    start = time.perf_counter()
    num_epochs = cfg.epochs_in_chunk(chunk)
    state, metrics = program.run_chunk(state, task, jnp.int32(num_epochs))
    metrics = _to_host(metrics)
    seconds = time.perf_counter() - start
    record = {
      "task_index": task_index,
      "task": run.tasks[task_index],
      "chunk": chunk,
      "env_steps_per_s": len(run.seeds) * num_epochs * cfg.sac.num_envs / seconds,
      "seconds": seconds,
      "episode_return_per_seed": metrics["episode_return"],
      **{k: float(np.nanmean(v)) if np.any(np.isfinite(v)) else None for k, v in metrics.items()},
      "per_seed": {k: v for k, v in metrics.items() if k != "episode_return"},
    }
    for callback in callbacks:
      callback.on_chunk(ChunkEvent(task_index, chunk, state, metrics, record))
  state, end_metrics = program.end_task(state, task)
  keys = evaluation_keys(run.seeds, "end_of_task", task_index, run.eval_tasks)
  row = programs.evaluate_row(state, run.eval_tasks, keys, task)
  return state, row, _to_host(end_metrics)


class NonFiniteGuard(Callback):
  """Stops the run on a non-finite loss, naming it (the last checkpoint predates the chunk)."""

  def __init__(self, seeds: Sequence[int]):
    self.seeds = list(seeds)

  def on_chunk(self, event: ChunkEvent) -> None:
    for name, value in event.metrics.items():
      if "loss" in name and not np.all(np.isfinite(value)):
        bad = [
          s for s, v in zip(self.seeds, np.atleast_1d(value), strict=True) if not np.isfinite(v)
        ]
        raise FloatingPointError(
          f"{name} became non-finite in task index {event.task_index}, chunk {event.chunk}, "
          f"for seeds {bad}; check the learning rates and reward scaling. Checkpoints before "
          "this chunk are kept."
        )


class LearningCurves(Callback):
  """Every ``every`` chunks, the deterministic return on the task being trained goes into
  ``run.curves`` and the chunk's record."""

  def __init__(self, programs: TaskPrograms, run: RunRecord, every: int):
    self.programs, self.run, self.every = programs, run, every

  def on_chunk(self, event: ChunkEvent) -> None:
    if (event.chunk + 1) % self.every:
      return
    task_id = self.run.tasks[event.task_index]
    keys = evaluation_keys(self.run.seeds, "curve", event.task_index, [task_id], event.chunk)
    task = jnp.int32(task_id)
    program = self.programs[task_id]
    point = _to_host(program.evaluate_tasks(event.state, task[None], keys, task))[:, 0]
    self.run.curves[:, event.task_index, (event.chunk + 1) // self.every - 1] = point
    event.record["eval_return_per_seed"] = point
    event.record["eval_return"] = float(np.mean(point))


class Bookkeeping(Callback):
  """Appends each chunk's record to ``run.history``, puts each task's row into R, and moves
  ``run.position`` on (before any checkpoint of that chunk or task is written)."""

  def __init__(self, run: RunRecord):
    self.run = run

  def on_chunk(self, event: ChunkEvent) -> None:
    self.run.history.append(logs.to_jsonable(event.record))
    self.run.position = {"task_index": event.task_index, "chunk": event.chunk + 1}

  def on_task_end(self, task_index: int, state: TrainState, metrics: Metrics) -> None:
    del state
    self.run.position = {"task_index": task_index + 1, "chunk": 0}
    self.run.policy_params = [int(x) for x in np.atleast_1d(metrics[POLICY_PARAMS])]


class MetricsLogging(Callback):
  """``metrics.jsonl``: one line per chunk, then the task's row of R as it comes."""

  def __init__(self, log: logs.MetricsLog, run: RunRecord, num_chunks: int):
    self.log, self.run, self.num_chunks = log, run, num_chunks

  def on_chunk(self, event: ChunkEvent) -> None:
    self.log.write(event.record)

  def on_task_end(self, task_index: int, state: TrainState, metrics: Metrics) -> None:
    del state
    task = self.run.tasks[task_index]
    end = {"task_index": task_index, "task": task, "chunk": self.num_chunks}
    per_seed = {f"{name}_per_seed": value for name, value in metrics.items()}
    returns = self.run.returns[:, task_index]
    self.log.write({**end, "end_of_task_returns_per_seed": returns, **per_seed})


class Checkpointing(Callback):
  """A checkpoint of the state and ``run`` every ``every`` chunks (0: none inside a task) and
  at every task's end; step numbers order them (``num_chunks + 1`` steps a task)."""

  def __init__(self, checkpointer, run: RunRecord, num_chunks: int, every: int):
    self.checkpointer, self.run, self.num_chunks, self.every = checkpointer, run, num_chunks, every

  def on_chunk(self, event: ChunkEvent) -> None:
    if self.every and (event.chunk + 1) % self.every == 0:
      step = event.task_index * (self.num_chunks + 1) + event.chunk + 1
      self.checkpointer.save(step, event.state, self.run.jsonable())

  def on_task_end(self, task_index: int, state: TrainState, metrics: Metrics) -> None:
    del metrics
    self.checkpointer.save((task_index + 1) * (self.num_chunks + 1), state, self.run.jsonable())

  def close(self) -> None:
    self.checkpointer.close()


class ProgressBar(Callback):
  """A tqdm bar over all chunks, with the latest speed, return and curve point; each task's
  row of R (mean over seeds) printed as it comes."""

  def __init__(self, run: RunRecord, num_chunks: int):
    self.run = run
    done = run.position["task_index"] * num_chunks + run.position["chunk"]
    self.bar = logs.progress_bar(len(run.tasks) * num_chunks, done, True)
    self.last_eval = None

  def on_chunk(self, event: ChunkEvent) -> None:
    record = event.record
    self.last_eval = record.get("eval_return", self.last_eval)
    self.bar.update(1)
    self.bar.set_postfix(
      task=record["task"],
      steps_per_s=f"{record['env_steps_per_s']:.0f}",
      recent_return=record["recent_return"],
      eval_return=self.last_eval,
    )

  def on_task_end(self, task_index: int, state: TrainState, metrics: Metrics) -> None:
    del state, metrics
    row = np.mean(self.run.returns[:, task_index], axis=0)
    self.bar.write(
      f"After task {self.run.tasks[task_index]}: return per eval task (mean over seeds) "
      + " ".join(f"{r:.0f}" for r in row)
    )

  def close(self) -> None:
    self.bar.close()


class _StoppedError(Exception):
  pass


class StopAfter(Callback):
  """Stops the run (as if killed) after ``num_chunks`` chunks of this call: for tests."""

  def __init__(self, num_chunks: int):
    self.left = num_chunks

  def on_chunk(self, event: ChunkEvent) -> None:
    del event
    self.left -= 1
    if self.left <= 0:
      raise _StoppedError


# --------------------------------------------------------------------------------------------
# The driver.


@dataclasses.dataclass
class SequenceResult:
  """What a continual run produces (NumPy, host side).

  Attributes:
    returns: [num_seeds, num_tasks, num_eval_tasks] ``R[seed, after_task, eval_task]``: the
      deterministic return on each evaluation task after training each task.
    curves: [num_seeds, num_tasks, num_evals] deterministic return on the task being
      trained, every ``eval_every_chunks`` chunks (empty when that is 0).
    chunk_metrics: one dict per chunk (means over seeds; each seed's under ``per_seed``) as logged.
    state: the final seed-batched ``TrainState``.
    policy_params: the method's policy parameter count after the sequence, as its last
      ``end_task`` reported it (the seeds' mean where they differ: CSP's kept anchors).
    ft_1_policy_params: FT-1's at the same sizes; model size = the ratio of the two.
    seconds: the run's wall seconds over every session it took (``RunRecord.seconds``).
  """

  returns: np.ndarray
  curves: np.ndarray
  chunk_metrics: list[dict[str, Any]]
  state: TrainState
  policy_params: float | None = None
  ft_1_policy_params: int | None = None
  seconds: float | None = None


def train_sequence(
  cfg: RunConfig,
  env: TaskEnv | Sequence[TaskEnv],
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
    env: the task environment, whose task ids ``tasks`` and ``eval_tasks`` index; or one env
      per task id (Continual World), each distinct env compiled into its own program.
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
  envs = _envs_per_task(env)
  run = _new_record(cfg, envs, tasks, seeds, eval_tasks, eval_every_chunks, lane_overrides)
  if resume and out_dir is None:
    raise ValueError("resume=True needs out_dir.")
  if stop_after_chunks is not None and stop_after_chunks < 1:
    raise ValueError(f"stop_after_chunks must be >= 1, got {stop_after_chunks}.")
  sharding = seed_sharding(len(run.seeds), devices)
  programs = TaskPrograms(
    lambda env: make_task_program(cfg, env, method, run.seeds, sharding, lane_overrides), envs
  )
  state = programs[run.tasks[0]].init()
  out = None if out_dir is None else pathlib.Path(out_dir)
  writer = jax.process_index() == 0  # Of several processes, one writes files and progress.
  callbacks: list[Callback] = [NonFiniteGuard(run.seeds)]
  if eval_every_chunks:
    callbacks.append(LearningCurves(programs, run, eval_every_chunks))
  callbacks.append(Bookkeeping(run))
  if out is not None:
    state, file_callbacks = _open_out_dir(
      out, cfg, programs, method, run, state, resume, writer, checkpoint_every_chunks
    )
    callbacks += file_callbacks
  if progress and writer:
    callbacks.append(ProgressBar(run, cfg.num_chunks))
  if stop_after_chunks is not None:
    callbacks.append(StopAfter(stop_after_chunks))
  try:
    for task_index in range(run.position["task_index"], len(run.tasks)):
      start_chunk = run.position["chunk"]
      state, run.returns[:, task_index], end_metrics = run_task(
        programs, cfg, state, run, task_index, start_chunk, callbacks
      )
      for callback in callbacks:
        callback.on_task_end(task_index, state, end_metrics)
  except _StoppedError:
    return SequenceResult(run.returns, run.curves, run.history, state)
  finally:
    for callback in callbacks:
      callback.close()
  return _finish(out if writer else None, cfg, envs[0], method, run, state)


def _envs_per_task(env: TaskEnv | Sequence[TaskEnv]) -> tuple[TaskEnv, ...]:
  """The env of each task id: ``env`` for all of its ``num_tasks``, or one per task id."""
  if not isinstance(env, Sequence):
    return (env,) * env.num_tasks
  envs = tuple(env)
  sizes = {(e.observation_size, e.action_size) for e in envs}
  if not envs or len(sizes) != 1:
    raise ValueError(f"the task envs must share observation and action sizes, got {sizes}.")
  return envs


def _new_record(cfg, envs, tasks, seeds, eval_tasks, eval_every_chunks, lane_overrides):
  """The empty ``RunRecord`` of a run, its arguments checked."""
  tasks, seeds = [int(t) for t in tasks], [int(s) for s in seeds]
  eval_tasks = sorted(set(tasks)) if eval_tasks is None else [int(t) for t in eval_tasks]
  for t in {*tasks, *eval_tasks}:
    if not 0 <= t < min(len(envs), cfg.max_tasks):
      raise ValueError(f"task id {t} is outside [0, {min(len(envs), cfg.max_tasks)}).")
  if not seeds or (lane_overrides is None and len(set(seeds)) != len(seeds)):
    raise ValueError(f"seeds must be distinct and non-empty, got {seeds}.")
  num_evals = cfg.num_chunks // eval_every_chunks if eval_every_chunks else 0
  returns = np.full((len(seeds), len(tasks), len(eval_tasks)), np.nan)
  curves = np.full((len(seeds), len(tasks), num_evals), np.nan)
  return RunRecord(tasks, eval_tasks, seeds, returns, curves)


def _open_out_dir(out, cfg, programs, method, run: RunRecord, state, resume, writer, every):
  """The output folder: the newest checkpoint restored into ``state`` and ``run`` (with
  ``resume``), the manifest and ``metrics.jsonl`` (by the writing process), and the
  callbacks that log (``MetricsLogging``) and checkpoint (``Checkpointing``, every ``every``
  chunks)."""
  from rewirejax.checkpoint import Checkpointer

  out.mkdir(parents=True, exist_ok=True)
  checkpointer = Checkpointer(out / "checkpoints")
  if resume and checkpointer.latest_step() is not None:
    position = checkpointer.progress()["position"]
    like = _resume_template(programs, run, state, position["task_index"], position["chunk"])
    state, saved = checkpointer.restore(like)
    run.restore(saved)
  callbacks: list[Callback] = []
  if writer:
    _write_manifest(out, cfg, method, programs.envs, run)
    done_until = (run.position["task_index"], run.position["chunk"] - 1) if resume else None
    log = logs.MetricsLog(out / "metrics.jsonl", keep_until=done_until)
    callbacks.append(MetricsLogging(log, run, cfg.num_chunks))
  callbacks.append(Checkpointing(checkpointer, run, cfg.num_chunks, every))
  return state, callbacks


def _resume_template(programs: TaskPrograms, run: RunRecord, state, task_index: int, chunk: int):
  """The structure a checkpoint at (``task_index``, ``chunk``) was saved in: ``state``'s, with
  the envs of the task then under way (inside a task) or just ended (at its end)."""
  index = task_index if chunk > 0 else max(task_index - 1, 0)
  task = run.tasks[min(index, len(run.tasks) - 1)]
  if programs.envs[task] is programs.envs[run.tasks[0]]:
    return state
  like = jax.eval_shape(programs[task].begin_task, state, jnp.int32(task))
  sharding = jax.tree.leaves(state)[0].sharding  # Every leaf is laid out by the seed axis.
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), like)


def _write_manifest(out: pathlib.Path, cfg, method, envs, run: RunRecord) -> None:
  manifest = logs.manifest(
    cfg,
    method=method.name,
    tasks=run.tasks,
    eval_tasks=run.eval_tasks,
    seeds=run.seeds,
    env=type(envs[0]).__name__,
    **({"envs": [dataclasses.asdict(e) for e in envs]} if len(set(map(id, envs))) > 1 else {}),
    num_chunks_per_task=cfg.num_chunks,
  )
  logs.write_json_atomic(out / "manifest.json", manifest)


def _finish(out, cfg, env, method, run: RunRecord, state: TrainState) -> SequenceResult:
  """The ``SequenceResult``, with the policy sizes; ``result.json`` in ``out`` (if given)."""
  sizes = run.policy_params
  policy_params = sizes[0] if len(set(sizes)) == 1 else float(np.mean(sizes))
  ft_1_policy_params = ft_1_policy_size(env.observation_size, env.action_size, cfg)
  if out is not None:
    result = {
      "returns": run.returns,
      "curves": run.curves,
      "tasks": run.tasks,
      "eval_tasks": run.eval_tasks,
      "seeds": run.seeds,
      "method": method.name,
      "policy_params": policy_params,
      "ft_1_policy_params": ft_1_policy_params,
    }
    logs.write_json_atomic(out / "result.json", result)
  return SequenceResult(
    run.returns, run.curves, run.history, state, policy_params, ft_1_policy_params, run.seconds
  )
