"""A ``TaskContext`` for calling a method's task hooks directly, with only the trainer tools a
test needs (the others None)."""

from __future__ import annotations

import jax.numpy as jnp

from rewirejax.methods.base import TaskContext


def task_context(
  task_id,
  key,
  *,
  evaluate=None,
  networks=None,
  replay=None,
  num_tasks=None,
  init_actor=None,
  init_critic=None,
  finetune=None,
) -> TaskContext:
  """The context of task ``task_id`` (``num_tasks`` defaults to ``task_id + 1``)."""
  task_id = jnp.int32(task_id)
  num_tasks = task_id + 1 if num_tasks is None else jnp.int32(num_tasks)
  return TaskContext(
    task_id, num_tasks, key, replay, networks, init_actor, init_critic, evaluate, finetune
  )
