"""The plug-in seam: a continual-learning method as a NamedTuple of pure functions.

Like ``optax.GradientTransformation``: the trainer owns the loop and calls these hooks at fixed
points; everything a method remembers lives in its state pytree, carried (and vmapped over
seeds) with the agent. ``fine_tuning()`` is FT-1: every hook is the identity, and a method
replaces only the hooks it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp

from rewirejax import networks as networks_lib
from rewirejax.config import RunConfig
from rewirejax.replay import ReplayState
from rewirejax.types import Array, Metrics, Params, PRNGKey, TaskId, Transition

MethodState = Any


class Method(NamedTuple):
  """Hooks (all pure; those called inside the jitted chunk must be traceable).

  Attributes:
    name: registry name.
    make_networks: (observation_size, action_size, run_config) -> SACNetworks; default the
      plain MLP actor (rewiring methods build it from PermutedDense).
    init: (key, agent_params) -> method_state, once per run.
    begin_task: (agent_params, method_state, task_id, key) -> (agent_params, method_state),
      after the trainer's own per-task resets.
    penalty: (actor_params, method_state, batch, task_id) -> (scalar, metrics), added to the
      actor loss (L2, EWC, distillation, alignment).
    mask_grads: (actor_grads, method_state, task_id) -> actor_grads (freezing weights).
    end_task: (agent_params, method_state, replay, task_id, key) ->
      (agent_params, method_state, metrics), after training a task.
    eval_params: (agent_params, method_state, task_id) -> actor_params used to evaluate
      ``task_id`` (a stored copy, a cached wiring, a mask).
  """

  name: str
  make_networks: Callable[[int, int, RunConfig], networks_lib.SACNetworks]
  init: Callable[[PRNGKey, networks_lib.AgentParams], MethodState]
  begin_task: Callable[..., tuple[networks_lib.AgentParams, MethodState]]
  penalty: Callable[[Params, MethodState, Transition, TaskId], tuple[Array, Metrics]]
  mask_grads: Callable[[Params, MethodState, TaskId], Params]
  end_task: Callable[..., tuple[networks_lib.AgentParams, MethodState, Metrics]]
  eval_params: Callable[[networks_lib.AgentParams, MethodState, TaskId], Params]


def make_mlp_networks(observation_size: int, action_size: int, cfg: RunConfig):
  """The baselines' networks (SPEC §2): the task-headed actor with plain Dense hidden layers
  (no permutation) and the twin critic."""
  return networks_lib.make_sac_networks(
    observation_size, action_size, cfg.max_tasks, cfg.sac.hidden_sizes, permuted=False
  )


def _init(key, params):
  del key, params
  return ()


def _begin_task(params, state, task_id, key):
  del task_id, key
  return params, state


def _penalty(actor_params, state, batch, task_id):
  del actor_params, state, batch, task_id
  return jnp.float32(0.0), {}


def _mask_grads(grads, state, task_id):
  del state, task_id
  return grads


def _end_task(params, state, replay: ReplayState, task_id, key):
  del replay, task_id, key
  return params, state, {}


def _eval_params(params, state, task_id):
  del state, task_id
  return params.actor


_IDENTITY_HOOKS = {
  "make_networks": make_mlp_networks,
  "init": _init,
  "begin_task": _begin_task,
  "penalty": _penalty,
  "mask_grads": _mask_grads,
  "end_task": _end_task,
  "eval_params": _eval_params,
}


def fine_tuning(name: str = "ft_1", **overrides: Any) -> Method:
  """FT-1: one policy fine-tuned on every task; ``overrides`` replace hooks by name."""
  unknown = set(overrides) - set(_IDENTITY_HOOKS)
  if unknown:
    raise ValueError(f"unknown Method hooks {sorted(unknown)}; valid: {sorted(_IDENTITY_HOOKS)}")
  return Method(name=name, **{**_IDENTITY_HOOKS, **overrides})
