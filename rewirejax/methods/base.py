"""The plug-in seam: a continual-learning method as a NamedTuple of pure functions.

Like ``optax.GradientTransformation``: the trainer owns the loop and calls these hooks at fixed
points; everything a method remembers lives in its state pytree, carried (and vmapped over
seeds) with the agent. ``fine_tuning()`` is FT-1: every hook is the identity, and a method
replaces only the hooks it needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rewirejax import networks as networks_lib
from rewirejax.config import RunConfig, SACConfig
from rewirejax.replay import ReplayState
from rewirejax.types import Array, Metrics, Params, PRNGKey, TaskId

MethodState = Any


@dataclasses.dataclass(frozen=True)
class NoOptions:
  """The options of a method that has none (FT-1, FT-N, SAC-N)."""

  def validate(self) -> None:
    pass


class TaskContext(NamedTuple):
  """What the task-boundary hooks are given besides the agent's params and the method's
  state: the task, a key, its replay, and the trainer's own machinery (pure, traceable).

  Attributes:
    task_id: int32, the task beginning or ending.
    num_tasks: int32, the tasks of the sequence begun so far, this one included (model size).
    key: the hook's own PRNG key.
    replay: the task's transitions (empty at ``begin_task``).
    networks: the method's ``SACNetworks``.
    init_actor: key -> fresh actor params (SAC-N's new policy per task).
    init_critic: key -> fresh critic params (CSP's new critic per subspace).
    evaluate: (actor_params, task_id, key) -> mean deterministic return on ``task_id``, with the
      run's evaluation settings (mode selection, alpha search).
    finetune: (agent_params, method_state, replay, task_id, key, num_updates) -> agent_params
      after ``num_updates`` more SAC updates (critic steps; fresh Adam states, the initial
      temperature, the target critic copied from the critic) on ``replay``, through the
      method's own losses and gradient mask (PackNet's retraining after pruning).
  """

  task_id: TaskId
  num_tasks: Array
  key: PRNGKey
  replay: ReplayState
  networks: networks_lib.SACNetworks
  init_actor: Callable[[PRNGKey], Params]
  init_critic: Callable[[PRNGKey], Params]
  evaluate: Callable[[Params, TaskId, PRNGKey], Array]
  finetune: Callable[..., networks_lib.AgentParams]


# The end-of-task metric every method reports: its policy's parameter count after
# ``num_tasks`` tasks, as the paper counts model size (stored copies, masks, wirings and the
# heads used count; the critic does not).
POLICY_PARAMS = "policy_params"


class Method(NamedTuple):
  """A method's name and its eight hooks (all pure; those called inside the jitted chunk must
  be traceable): three build its parts, five run at fixed points of the sequence.

  Attributes:
    name: registry name.
    make_networks: (observation_size, action_size, run_config) -> SACNetworks; default the
      plain MLP actor (rewiring methods build it from PermutedDense).
    make_losses: (sac_losses, networks, run_config) -> SACLosses, the method's one loss
      transform. ``sac_losses(policy)`` gives SAC's losses of a training forward ``policy``
      (``sac.PolicyFn``); the default is ``sac_losses(networks.policy)``. A penalty on the
      actor is ``with_actor_penalty`` (FT-L2, EWC, the alignment); Rewire takes every mode's
      SAC loss and adds the distillation.
    actor_optimizer: (sac_config) -> the actor's ``optax.GradientTransformationExtraArgs``;
      its ``update`` is also given ``method_state`` and ``task_id``. Default: Adam at
      ``actor_lr``; a method freezes weights with a gradient mask in front of it (``masked``).
    init: (key, agent_params) -> method_state, once per run.
    act: (networks, actor_params, method_state, obs, task_id, key) -> (mu, log_std,
      method_state), the policy that collects data (Rewire: a random wiring mode per env and
      step; CSP: a subspace point per env, resampled on a schedule kept in its state).
    begin_task: (agent_params, method_state, TaskContext) -> (agent_params, method_state),
      after the trainer's own per-task resets.
    end_task: (agent_params, method_state, TaskContext) -> (agent_params, method_state,
      metrics), after training a task. The metrics hold ``POLICY_PARAMS``, the model size
      (``actor_size`` by default) and whatever else the method reports.
    eval_params: (agent_params, method_state, task_id) -> actor_params used to evaluate
      ``task_id`` (a stored copy, a cached wiring, a mask).
  """

  name: str
  make_networks: Callable[[int, int, RunConfig], networks_lib.SACNetworks]
  make_losses: Callable[..., Any]
  actor_optimizer: Callable[[SACConfig], optax.GradientTransformationExtraArgs]
  init: Callable[[PRNGKey, networks_lib.AgentParams], MethodState]
  act: Callable[..., tuple[Array, Array, MethodState]]
  begin_task: Callable[..., tuple[networks_lib.AgentParams, MethodState]]
  end_task: Callable[..., tuple[networks_lib.AgentParams, MethodState, Metrics]]
  eval_params: Callable[[networks_lib.AgentParams, MethodState, TaskId], Params]


def make_mlp_networks(observation_size: int, action_size: int, cfg: RunConfig):
  """The baselines' networks (SPEC §2): the reference's plain MLP actor (Dense hidden layers,
  one head shared by every task) and the twin critic."""
  return networks_lib.make_sac_networks(
    observation_size, action_size, 1, cfg.sac.hidden_sizes, permuted=False
  )


def _make_losses(sac_losses, networks, cfg):
  del cfg
  return sac_losses(networks.policy)


def with_actor_penalty(losses, penalty: Callable[[Params, MethodState], tuple[Array, Metrics]]):
  """``losses`` with ``penalty(actor_params, method_state) -> (scalar, metrics)`` added to the
  actor loss, its metrics to the actor's."""

  def actor(actor_params, params, method_state, batch, task_id, key):
    loss, aux = losses.actor(actor_params, params, method_state, batch, task_id, key)
    value, metrics = penalty(actor_params, method_state)
    return loss + value, aux._replace(metrics={**aux.metrics, **metrics})

  return losses._replace(actor=actor)


def _act(networks, actor_params, state, obs, task_id, key):
  del key
  return (*networks.actor.apply(actor_params, obs, task_id), state)


def _init(key, params):
  del key, params
  return ()


def _begin_task(params, state, ctx: TaskContext):
  del ctx
  return params, state


def actor_adam(cfg: SACConfig) -> optax.GradientTransformationExtraArgs:
  """The actor's optimizer by default: Adam at ``cfg.actor_lr``."""
  return optax.adam(cfg.actor_lr)


MaskFn = Callable[[Params, MethodState, TaskId], Params]


def masked(mask: MaskFn, make_inner=actor_adam):
  """An ``actor_optimizer`` that passes the gradients through ``mask(grads, method_state,
  task_id)`` (zeros freeze weights) before ``make_inner(cfg)``; the mask is stateless, so the
  optimizer state is the inner one's."""

  def make(cfg: SACConfig) -> optax.GradientTransformationExtraArgs:
    inner = make_inner(cfg)

    def update(grads, opt_state, params=None, *, method_state, task_id, **extra):
      return inner.update(mask(grads, method_state, task_id), opt_state, params, **extra)

    return optax.GradientTransformationExtraArgs(inner.init, update)

  return make


def _end_task(params, state, ctx: TaskContext):
  return params, state, {POLICY_PARAMS: actor_size(params.actor, ctx.num_tasks)}


def _eval_params(params, state, task_id):
  del state, task_id
  return params.actor


def num_params(tree) -> int:
  """Number of scalars in a pytree of arrays or ``ShapeDtypeStruct``s."""
  return int(sum(np.prod(x.shape, dtype=np.int64) for x in jax.tree.leaves(tree)))


def actor_size(actor_params: Params, num_tasks) -> Array:
  """Parameters of one task-headed actor after ``num_tasks`` tasks (an int or a traced
  int32): the hidden layers and the head slots used so far (``min(num_tasks, num_heads)``;
  FT-1's single head counts once)."""
  params = actor_params["params"]
  num_heads = params["head_kernel"].shape[0]
  per_head = num_params((params["head_kernel"], params["head_bias"])) // num_heads
  shared = num_params(actor_params) - num_heads * per_head
  return shared + jnp.minimum(jnp.maximum(num_tasks, 1), num_heads) * per_head


def ft_1_policy_size(observation_size: int, action_size: int, cfg: RunConfig) -> int:
  """FT-1's policy parameter count at these sizes: the unit of model size."""
  actor = make_mlp_networks(observation_size, action_size, cfg).actor
  shapes = jax.eval_shape(
    actor.init, jax.random.key(0), jnp.zeros((1, observation_size)), jnp.int32(0)
  )
  return int(actor_size(shapes, 1))


_IDENTITY_HOOKS = {
  "make_networks": make_mlp_networks,
  "make_losses": _make_losses,
  "actor_optimizer": actor_adam,
  "init": _init,
  "act": _act,
  "begin_task": _begin_task,
  "end_task": _end_task,
  "eval_params": _eval_params,
}


def fine_tuning(name: str = "ft_1", **overrides: Any) -> Method:
  """FT-1: one policy fine-tuned on every task; ``overrides`` replace hooks by name."""
  unknown = set(overrides) - set(_IDENTITY_HOOKS)
  if unknown:
    raise ValueError(f"unknown Method hooks {sorted(unknown)}; valid: {sorted(_IDENTITY_HOOKS)}")
  return Method(name=name, **{**_IDENTITY_HOOKS, **overrides})
