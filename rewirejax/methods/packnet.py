"""PackNet (Mallya & Lazebnik 2018; implementation notes §7): one network, weights owned by tasks.

Every actor weight has an owner: a task, or none (free, ``-1``). During task ``t`` only the free
weights train; the weights of earlier tasks are used but frozen. At the task's end, in every
layer (every leaf) the ``keep_fraction`` share of the leaf's weights, chosen among the still-free
ones by ``|w|``, becomes task ``t``'s (the reference code's rule: with 12.5 %, 8 tasks fill the
network; not 12.5 % of what is left, which would shrink geometrically), the other free weights
are set to zero, and ``finetune_updates`` SAC updates retrain
task ``t``'s weights alone on its replay buffer. Evaluating task ``t`` uses only the weights owned
by tasks ``<= t``. Freezing is a multiply on the gradients (``mask_grads``) with fresh Adam
states per phase, so a frozen weight's update is exactly zero, plus a ``where`` on the weights
when pruning: owned weights stay bit-identical.

Task ids are owners, so tasks must be trained in increasing id order, each once (every Brax
scenario is). Model size 2: the weights and the owner map.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rewirejax.methods import base
from rewirejax.types import Array, Params

FREE = -1


class PackNetState(NamedTuple):
  """Attributes:
  owner: int32 pytree shaped like the actor: the task owning each weight, ``FREE`` if none.
  trainable_owner: int32 scalar, whose weights get gradients: ``FREE`` while training a task,
    the task itself while retraining after pruning.
  trained: bool [max_tasks], tasks finished (untrained tasks are evaluated with every weight).
  """

  owner: Params
  trainable_owner: Array
  trained: Array


def prune_free_weights(weights: Array, owner: Array, task_id, keep_fraction: float) -> Array:
  """The new owner map of one leaf: its ``size - floor((1 - keep_fraction) * size)`` free
  weights of largest ``|w|`` (all free ones, if fewer) go to ``task_id``, ties broken by
  position; the rest keep their owner. The count is the reference's (``kthvalue`` at
  ``int(size * prune_coeff)``, ``prune_coeff = 1 - keep_fraction``)."""
  free = owner == FREE
  num_keep = weights.size - int((1.0 - keep_fraction) * weights.size)
  magnitude = jnp.where(free, jnp.abs(weights), -jnp.inf).ravel()
  rank = jnp.empty_like(magnitude, dtype=jnp.int32)
  rank = rank.at[jnp.argsort(-magnitude, stable=True)].set(jnp.arange(magnitude.size))
  keep = free & (rank.reshape(weights.shape) < num_keep)
  return jnp.where(keep, jnp.int32(task_id), owner)


def owned_by(actor_params: Params, owner: Params, last_task) -> Params:
  """The actor with every weight not owned by a task ``<= last_task`` set to zero."""
  return jax.tree.map(
    lambda w, o: jnp.where((o != FREE) & (o <= last_task), w, 0.0), actor_params, owner
  )


@dataclasses.dataclass(frozen=True)
class PackNetConfig:
  """PackNet's options (the paper's by default)."""

  keep_fraction: float = 0.125  # Of every layer's free weights, kept for each task.
  # SAC updates of the retraining after pruning; None: a fifth of a task's updates (the
  # paper's 100 k of 500 k).
  finetune_updates: int | None = None

  def validate(self) -> None:
    if not 0.0 < self.keep_fraction <= 1.0:
      raise ValueError(f"keep_fraction must be in (0, 1], got {self.keep_fraction}.")
    if self.finetune_updates is not None and self.finetune_updates < 0:
      raise ValueError(f"finetune_updates must be >= 0, got {self.finetune_updates}.")


def make_packnet(cfg, options: PackNetConfig) -> base.Method:
  """PackNet giving each task ``keep_fraction`` of every layer, retrained for
  ``finetune_updates`` SAC updates after pruning (the paper: 12.5 %, 100 k)."""
  max_tasks, keep_fraction = cfg.max_tasks, options.keep_fraction
  finetune_updates = options.finetune_updates
  if finetune_updates is None:
    finetune_updates = cfg.train_epochs * cfg.sac.updates_per_epoch // 5

  def init(key, params):
    del key
    owner = jax.tree.map(lambda w: jnp.full(w.shape, FREE, jnp.int32), params.actor)
    return PackNetState(owner, jnp.int32(FREE), jnp.zeros(max_tasks, bool))

  def begin_task(params, state, ctx):
    del ctx
    return params, state._replace(trainable_owner=jnp.int32(FREE))

  def mask_grads(grads, state, task_id):
    del task_id
    return jax.tree.map(
      lambda g, o: g * (o == state.trainable_owner).astype(g.dtype), grads, state.owner
    )

  def end_task(params, state, ctx):
    task_id = ctx.task_id
    owner = jax.tree.map(
      lambda w, o: prune_free_weights(w, o, task_id, keep_fraction), params.actor, state.owner
    )
    actor = jax.tree.map(lambda w, o: jnp.where(o == FREE, 0.0, w), params.actor, owner)
    state = PackNetState(owner, jnp.int32(task_id), state.trained.at[task_id].set(True))
    params = ctx.finetune(
      params._replace(actor=actor), state, ctx.replay, task_id, ctx.key, finetune_updates
    )
    size = 2 * base.actor_size(params.actor, ctx.num_tasks)  # The weights and their owners.
    return params, state, {base.POLICY_PARAMS: size}

  def eval_params(params, state, task_id):
    masked = owned_by(params.actor, state.owner, task_id)
    return jax.tree.map(lambda m, w: jnp.where(state.trained[task_id], m, w), masked, params.actor)

  return base.fine_tuning(
    "packnet",
    init=init,
    begin_task=begin_task,
    actor_optimizer=base.masked(mask_grads),
    end_task=end_task,
    eval_params=eval_params,
  )
