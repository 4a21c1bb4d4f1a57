"""FT-N and SAC-N: one stored policy per task (implementation notes §7).

Both keep a copy of the actor for every task slot, written at the task's end and used to
evaluate that task afterwards; a task not trained yet is evaluated with the current actor.
SAC-N starts every task after the first from a freshly initialised policy (the critic is kept,
as in the reference code); FT-N fine-tunes the previous task's policy. FT-1 is
``base.fine_tuning()`` itself. Model size: one actor per task trained (N).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rewirejax.methods import base
from rewirejax.types import Array, Params


class PolicyStore(NamedTuple):
  """Per-task copies of the actor.

  Attributes:
    policies: the actor's pytree with a leading [max_tasks] axis on every leaf.
    trained: bool [max_tasks], whether slot t holds task t's final policy.
  """

  policies: Params
  trained: Array


def _stored_policies(name: str, fresh_policy_per_task: bool, max_tasks: int) -> base.Method:
  def init(key, params):
    del key
    policies = jax.tree.map(lambda x: jnp.zeros((max_tasks, *x.shape), x.dtype), params.actor)
    return PolicyStore(policies, jnp.zeros(max_tasks, bool))

  def begin_task(params, state, ctx):
    if not fresh_policy_per_task:
      return params, state
    fresh = ctx.init_actor(ctx.key)
    actor = jax.tree.map(lambda new, old: jnp.where(ctx.task_id > 0, new, old), fresh, params.actor)
    return params._replace(actor=actor), state

  def end_task(params, state, ctx):
    policies = jax.tree.map(
      lambda slots, x: slots.at[ctx.task_id].set(x), state.policies, params.actor
    )
    size = jnp.maximum(ctx.num_tasks, 1) * base.actor_size(params.actor, 1)
    state = PolicyStore(policies, state.trained.at[ctx.task_id].set(True))
    return params, state, {base.POLICY_PARAMS: size}

  def eval_params(params, state, task_id):
    stored = jax.tree.map(lambda slots: slots[task_id], state.policies)
    return jax.tree.map(
      lambda old, current: jnp.where(state.trained[task_id], old, current), stored, params.actor
    )

  return base.fine_tuning(
    name,
    init=init,
    begin_task=begin_task,
    end_task=end_task,
    eval_params=eval_params,
  )


def make_ft_n(cfg, options: base.NoOptions = base.NoOptions()) -> base.Method:
  """FT-N: fine-tune one policy across tasks and keep a copy of it after each task."""
  del options
  return _stored_policies("ft_n", fresh_policy_per_task=False, max_tasks=cfg.max_tasks)


def make_sac_n(cfg, options: base.NoOptions = base.NoOptions()) -> base.Method:
  """SAC-N: a new randomly initialised policy per task, a copy kept after each task."""
  del options
  return _stored_policies("sac_n", fresh_policy_per_task=True, max_tasks=cfg.max_tasks)
