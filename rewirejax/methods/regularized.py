"""FT-L2 and EWC: one policy fine-tuned on every task, pulled toward the last task's weights.

Both add ``coef * sum_j F_j (theta_j - theta*_j)^2`` to the actor loss (implementation notes §7),
where ``theta*`` is the actor at the end of the previous task (every leaf, the head included) and
``F`` the importance of each weight:

- FT-L2: ``F = 1``. Model size 2 (the weights and their anchor).
- EWC: ``F`` is the diagonal Fisher information of the pre-tanh Gaussian policy, averaged over
  ``fisher_samples`` replay states of each finished task and summed over tasks. For
  ``N(mu, diag sigma^2)`` it has the closed form (``estimate_fisher``)

      F_j = E_s sum_i [(d mu_i / d theta_j)^2 + 2 (d sigma_i / d theta_j)^2] / sigma_i^2,

  taken over all ``act_dim`` means and all ``act_dim`` standard deviations (the reference code
  loops over the wrong halves of its output; that is not copied). Model size 3 (weights,
  anchor, Fisher).

No penalty is applied during the first task (there is no anchor yet).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rewirejax import replay as replay_lib
from rewirejax.methods import base
from rewirejax.types import Array, Params

FISHER_FLOOR = 1e-5  # The reference clamps the Fisher from below.
SIGMA_SQUARED_EPS = 1e-6  # Added to sigma^2 in the denominator, as the reference does.


class AnchorCoefs(NamedTuple):
  """The pull's coefficient as a traced float32 leaf, so a grid of it is one vmapped job
  (``rewirejax sweep --coef``)."""

  coef: Array


class AnchorState(NamedTuple):
  """What the quadratic pull remembers.

  Attributes:
    anchor: the actor at the end of the previous task (theta*).
    importance: per-weight F, the actor's pytree (FT-L2: ones; EWC: the summed Fisher).
    active: bool scalar, whether a task has finished (the pull is on).
    coefs: the traced ``AnchorCoefs`` (initialised from the factory's ``coef``).
  """

  anchor: Params
  importance: Params
  active: Array
  coefs: AnchorCoefs


def quadratic_penalty(actor_params: Params, state: AnchorState) -> Array:
  """``coef * sum_j F_j (theta_j - theta*_j)^2`` over every leaf (``coef`` from
  ``state.coefs``), 0 before the first task ends."""
  coef = state.coefs.coef
  terms = jax.tree.map(
    lambda w, anchor, f: jnp.sum(f * (w - anchor) ** 2),
    actor_params,
    state.anchor,
    state.importance,
  )
  return jnp.where(state.active, coef * sum(jax.tree.leaves(terms)), 0.0)


def estimate_fisher(networks, actor_params: Params, obs: Array, task_id, chunk: int = 16) -> Params:
  """The diagonal Fisher of the policy's pre-tanh Gaussian, averaged over ``obs`` [N, obs_dim].

  Per state the Jacobians of ``mu`` and ``sigma`` [2 act_dim, ...] are taken by reverse mode
  and weighted by ``1 / (sigma^2 + eps)`` and ``2 / (sigma^2 + eps)``; each state's Fisher is
  floored at ``FISHER_FLOOR`` before the average (the reference's order). States go ``chunk``
  at a time (a divisor of N) into a running sum, so memory is ``chunk x 2 act_dim x`` the
  actor's size, whatever N.
  """

  def per_state(single_obs):
    def mean_and_std(params):
      mu, log_std = networks.actor.apply(params, single_obs, task_id)
      return jnp.concatenate([mu, jnp.exp(log_std)])

    outputs = mean_and_std(actor_params)
    act_dim = outputs.shape[0] // 2
    sigma_squared = outputs[act_dim:] ** 2 + SIGMA_SQUARED_EPS
    weights = jnp.concatenate([1.0 / sigma_squared, 2.0 / sigma_squared])  # [2 act_dim]
    jacobian = jax.jacrev(mean_and_std)(actor_params)  # Leaves [2 act_dim, *leaf.shape].
    fisher = jax.tree.map(lambda j: jnp.tensordot(weights, j**2, axes=1), jacobian)
    return jax.tree.map(lambda f: jnp.maximum(f, FISHER_FLOOR), fisher)

  def add_chunk(total, chunk_obs):
    fishers = jax.vmap(per_state)(chunk_obs)
    return jax.tree.map(lambda t, f: t + jnp.sum(f, axis=0), total, fishers), None

  num_states = obs.shape[0]
  chunk = math.gcd(num_states, chunk)
  zeros = jax.tree.map(jnp.zeros_like, actor_params)
  total, _ = jax.lax.scan(add_chunk, zeros, obs.reshape(-1, chunk, *obs.shape[1:]))
  return jax.tree.map(lambda t: t / num_states, total)


def _anchored(name: str, coef: float, fisher_samples: int | None, copies: int) -> base.Method:
  """The shared plug-in: ``fisher_samples=None`` is FT-L2 (F = 1), otherwise EWC."""

  def init(key, params):
    del key
    zeros = jax.tree.map(jnp.zeros_like, params.actor)
    coefs = AnchorCoefs(jnp.float32(coef))
    return AnchorState(anchor=zeros, importance=zeros, active=jnp.bool_(False), coefs=coefs)

  def penalty(actor_params, state):
    value = quadratic_penalty(actor_params, state)
    return value, {f"{name}/penalty": value}

  def make_losses(sac_losses, networks, cfg):
    del cfg
    return base.with_actor_penalty(sac_losses(networks.policy), penalty)

  def end_task(params, state, ctx):
    if fisher_samples is None:
      importance = jax.tree.map(jnp.ones_like, params.actor)
    else:
      obs = replay_lib.sample(ctx.replay, ctx.key, fisher_samples).obs
      fisher = estimate_fisher(ctx.networks, params.actor, obs, ctx.task_id)
      importance = jax.tree.map(jnp.add, state.importance, fisher)
    state = AnchorState(params.actor, importance, jnp.bool_(True), state.coefs)
    size = copies * base.actor_size(params.actor, ctx.num_tasks)  # The actor and its anchors.
    return params, state, {base.POLICY_PARAMS: size}

  return base.fine_tuning(name, init=init, make_losses=make_losses, end_task=end_task)


@dataclasses.dataclass(frozen=True)
class FTL2Config:
  """FT-L2's options; ``coef`` is traced (``AnchorCoefs``), so ``rewirejax sweep`` grids it."""

  TRACED: ClassVar[tuple[str, ...]] = ("coef",)
  coef: float = 1.0  # The pull's coefficient (the reference's l2_coeff).

  def validate(self) -> None:
    if self.coef < 0:
      raise ValueError(f"the coefficient must be >= 0, got {self.coef}.")


@dataclasses.dataclass(frozen=True)
class EWCConfig:
  """EWC's options; ``coef`` is traced (``AnchorCoefs``), so ``rewirejax sweep`` grids it."""

  TRACED: ClassVar[tuple[str, ...]] = ("coef",)
  coef: float = 1.0  # The pull's coefficient (the reference's fisher_coeff).
  fisher_samples: int = 1024  # Replay states the Fisher of a finished task is averaged over.

  def validate(self) -> None:
    if self.coef < 0:
      raise ValueError(f"the coefficient must be >= 0, got {self.coef}.")
    if self.fisher_samples < 1:
      raise ValueError(f"fisher_samples must be >= 1, got {self.fisher_samples}.")


def make_ft_l2(cfg, options: FTL2Config) -> base.Method:
  """FT-L2: ``coef * ||theta - theta*||^2`` (summed over all actor weights)."""
  del cfg
  return _anchored("ft_l2", options.coef, fisher_samples=None, copies=2)


def make_ewc(cfg, options: EWCConfig) -> base.Method:
  """EWC: ``coef * sum_j F_j (theta_j - theta*_j)^2``, F summed over finished tasks."""
  del cfg
  return _anchored("ewc", options.coef, fisher_samples=options.fisher_samples, copies=3)
