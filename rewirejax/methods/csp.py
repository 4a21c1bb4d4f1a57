"""CSP, continual subspace of policies (Gaussier et al. 2023; implementation notes §7).

The actor is a convex combination of ``max_tasks`` preallocated anchors: every layer's weights are
``W(alpha) = sum_i alpha_i W_i`` with ``alpha`` on the simplex of the active anchors. Task 0 trains
anchor 0 alone. Every later task adds an anchor initialised at the mean of the active ones and
trains only it (the old anchors are frozen by a gradient mask, ``mask_grads``), with ``alpha`` drawn
from a Dirichlet over the active anchors: ``"flat"`` (all ones) or ``"peaked"`` (``n^2`` on the new
anchor, n the number of active anchors). The critic is conditioned on ``alpha``: the point is
appended to the observation, so the SAC losses run unchanged on ``[obs, alpha]``; a new critic
starts with every new anchor (as the reference's). Acting, each env keeps its ``alpha`` for
``repeat_alpha`` steps, half of the envs drawing in the new subspace and half flat in the old one
(without the new anchor). In the update every transition gets a fresh point: for the critic from the
acting mixture (half of the rows in each subspace, so that Q(s, a, alpha) is learned where the alpha
search will score the old subspace too; it is learned off-policy, the action being given, with the
same point at s and s'), for the actor in the new subspace (the only anchor it trains).

At the task's end the alpha search: ``alpha_candidates`` points of the new subspace and as many of
the old one (without the new anchor) are scored by the critic on ``critic_states`` replay states
(the reference's 4096 points, each averaged over 1024 estimations),
``mean_s min_i Q_i([s, alpha], tanh(mu_alpha(s)))``; the best of each is then evaluated by
rollouts (the run's evaluation). The new anchor is kept only if its best return beats the old
subspace's by more than ``improvement_threshold`` (10 %); otherwise it is dropped and the task
keeps the old subspace's best point. Each task's point is stored and used to evaluate it.
Model size: the anchors kept plus the stored points (first seed's count).

Departures from the reference code: its critic learns Q at the acting point stored with each
transition but bootstraps from a fresh one, here one fresh point from the acting mixture at s and
s'; its 8,000 validation steps come out of the training
budget, here the rollouts come on top of it; its critic scores a point with the replay's own
actions, ``Q1([s, alpha], a_replay)``, here with the point's policy, ``min_i Q_i([s, alpha],
tanh(mu_alpha(s)))``; it rolls out the top 4 points of each subspace (one episode each), here
the top one with the run's evaluation; an env redraws at the ``repeat_alpha`` steps of the run,
not of its own episode (the same for Brax's synchronous 1000-step episodes); in task 0 the
reference gives half of the envs the all-zero point (a quirk not copied).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from rewirejax import networks as networks_lib
from rewirejax import replay as replay_lib
from rewirejax.methods import base
from rewirejax.networks import (
  LEAKY_SLOPE,
  LOG_STD_MAX,
  LOG_STD_MIN,
  stacked_torch_linear_init,
  torch_bias_init,
)
from rewirejax.types import Array, Params

DISTRIBUTIONS = ("flat", "peaked")


class SubspaceActor(nn.Module):
  """``([obs, alpha] or obs, task_id) -> (mu, log_std)`` of the policy at ``alpha``.

  An input of ``observation_size + num_anchors`` features carries its own ``alpha`` per row
  (cost: one matmul per anchor); a bare observation uses the ``"subspace"`` variable
  ``alpha`` [num_anchors] (set by ``with_alpha``; anchor 0 at init), whose weights are combined
  once.
  """

  action_size: int
  observation_size: int
  num_anchors: int
  hidden_sizes: tuple[int, ...] = (256, 256, 256)

  @nn.compact
  def __call__(self, obs: Array, task_id: Array) -> tuple[Array, Array]:
    del task_id
    fixed = self.variable("subspace", "alpha", lambda: jax.nn.one_hot(0, self.num_anchors)).value
    per_row = obs.shape[-1] == self.observation_size + self.num_anchors
    if per_row:
      obs, alpha = obs[..., : self.observation_size], obs[..., self.observation_size :]
    h = obs
    sizes = (*self.hidden_sizes, 2 * self.action_size)
    for layer, width in enumerate(sizes):
      shape = (self.num_anchors, h.shape[-1], width)
      kernels = self.param(f"kernel_{layer}", stacked_torch_linear_init, shape)
      biases = self.param(f"bias_{layer}", torch_bias_init(h.shape[-1]), shape[::2])
      if per_row:
        out = jnp.einsum("...i,aio->...ao", h, kernels) + biases
        h = jnp.einsum("...a,...ao->...o", alpha, out)
      else:
        h = h @ jnp.tensordot(fixed, kernels, axes=1) + fixed @ biases
      if layer < len(sizes) - 1:
        h = nn.leaky_relu(h, LEAKY_SLOPE)
    mu, log_std = jnp.split(h, 2, axis=-1)
    return mu, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class AlphaCritic(nn.Module):
  """The twin critic on ``[obs, alpha]`` (a bare observation gets ``alpha = 0``, at init)."""

  observation_size: int
  num_anchors: int
  hidden_sizes: tuple[int, ...] = (256, 256, 256)

  @nn.compact
  def __call__(self, obs: Array, action: Array) -> Array:
    if obs.shape[-1] == self.observation_size:
      obs = jnp.concatenate([obs, jnp.zeros((*obs.shape[:-1], self.num_anchors))], axis=-1)
    return networks_lib.TwinCritic(self.hidden_sizes, name="twin")(obs, action)


class SubspaceState(NamedTuple):
  """Attributes:
  num_anchors: int32 scalar, active anchors (the first ``num_anchors``).
  task_alpha: [max_tasks, max_tasks] each finished task's point (zeros before it finishes).
  trained: bool [max_tasks].
  acting_alpha: [num_envs, max_tasks] each training env's current point.
  acting_steps: int32 scalar, env steps since the points were drawn.
  kept_anchor: bool [max_tasks], whether the task's new anchor was kept (task 0: True).
  """

  num_anchors: Array
  task_alpha: Array
  trained: Array
  acting_alpha: Array
  acting_steps: Array
  kept_anchor: Array


def sample_alpha(key, num_active, num_anchors: int, shape, peaked: bool) -> Array:
  """Dirichlet points [*shape, num_anchors] on the first ``num_active`` anchors (zeros after):
  concentration 1 each, or ``num_active^2`` on the last active one when ``peaked``.

  Drawn as normalised Gamma variates without a rejection sampler: Gamma(1) is Exp(1), and
  Gamma(n^2), n^2 an integer, is the sum of n^2 of them (``jax.random.gamma``'s loop cost
  more than the rest of an update at small widths).
  """
  index = jnp.arange(num_anchors)
  key_flat, key_peak = jax.random.split(key)
  gammas = _positive_exponential(key_flat, (*shape, num_anchors))
  if peaked:
    terms = _positive_exponential(key_peak, (*shape, num_anchors**2))
    peak = jnp.sum(jnp.where(jnp.arange(num_anchors**2) < num_active**2, terms, 0.0), -1)
    gammas = jnp.where(index == num_active - 1, peak[..., None], gammas)
  gammas = jnp.where(index < num_active, gammas, 0.0)
  return gammas / jnp.sum(gammas, axis=-1, keepdims=True)


def _positive_exponential(key, shape) -> Array:
  """Exp(1) draws, never 0 (``jax.random.exponential`` gives 0 once in 2^23 draws, and a lone
  active anchor's point would then be 0 / 0): -log U for U uniform in [tiny, 1)."""
  return -jnp.log(jax.random.uniform(key, shape, minval=jnp.finfo(jnp.float32).tiny))


def acting_mixture(key, num_active, num_anchors: int, rows: int, peaked: bool) -> Array:
  """Points [rows, num_anchors] as the envs act: the first half in the new subspace (peaked or
  flat), the second half flat in the old one (without the newest anchor); with one active
  anchor, all in the new subspace."""
  key_new, key_old = jax.random.split(key)
  new = sample_alpha(key_new, num_active, num_anchors, (rows,), peaked)
  old = sample_alpha(key_old, jnp.maximum(num_active - 1, 1), num_anchors, (rows,), False)
  second_half = (jnp.arange(rows) >= rows // 2) & (num_active > 1)
  return jnp.where(second_half[:, None], old, new)


def with_alpha(actor_variables: Params, alpha: Array) -> Params:
  """The actor's variables with the bare-observation point set to ``alpha``."""
  return {**actor_variables, "subspace": {"alpha": alpha}}


@dataclasses.dataclass(frozen=True)
class CSPConfig:
  """CSP's options (the reference's values by default)."""

  distribution: str = "flat"  # The Dirichlet over the active anchors: "flat" or "peaked".
  repeat_alpha: int = 100  # Env steps an env keeps its acting point.
  improvement_threshold: float = 0.1  # The new anchor stays if it beats the old by this share.
  alpha_candidates: int = 4096  # Points of each subspace the critic scores at a task's end.
  critic_states: int = 1024  # Replay states each candidate is scored on.

  @property
  def peaked(self) -> bool:
    return self.distribution == "peaked"

  def validate(self) -> None:
    if self.distribution not in DISTRIBUTIONS:
      raise ValueError(
        f"Unknown distribution {self.distribution!r}; choices: {list(DISTRIBUTIONS)}."
      )
    if min(self.repeat_alpha, self.alpha_candidates, self.critic_states) < 1:
      raise ValueError("repeat_alpha, alpha_candidates and critic_states must be >= 1.")


def make_csp(cfg, c: CSPConfig) -> base.Method:
  """CSP with ``cfg.max_tasks`` preallocated anchors and options ``c`` (see the module
  docstring): the hooks below, bound to the options and the anchor count."""
  c.validate()
  max_tasks, num_envs = cfg.max_tasks, cfg.sac.num_envs
  return base.fine_tuning(
    "csp",
    make_networks=functools.partial(make_networks, max_tasks),
    make_losses=functools.partial(make_losses, c, max_tasks),
    act=functools.partial(act, c, max_tasks),
    init=functools.partial(init, max_tasks, num_envs),
    begin_task=functools.partial(begin_task, max_tasks),
    actor_optimizer=base.masked(functools.partial(mask_grads, max_tasks)),
    end_task=functools.partial(end_task, c, max_tasks),
    eval_params=functools.partial(eval_params, c, max_tasks),
  )


def make_networks(max_tasks: int, observation_size: int, action_size: int, cfg):
  hidden = cfg.sac.hidden_sizes
  actor = SubspaceActor(action_size, observation_size, max_tasks, hidden)
  critic = AlphaCritic(observation_size, max_tasks, hidden)
  return networks_lib.SACNetworks(actor, critic, networks_lib.plain_policy(actor))


def _append(obs: Array, alpha: Array, max_tasks: int) -> Array:
  """``[obs, alpha]``: the point appended to each observation row."""
  return jnp.concatenate([obs, jnp.broadcast_to(alpha, (*obs.shape[:-1], max_tasks))], -1)


def make_losses(c: CSPConfig, max_tasks: int, sac_losses, networks, cfg):
  """SAC's losses on ``[obs, alpha]``: the critic at points of the acting mixture, the actor
  at points of the new subspace (a fresh point per transition, the same at s and s')."""
  del cfg
  losses = sac_losses(networks.policy)

  def at_points(batch, alpha):
    obs, next_obs = _append(batch.obs, alpha, max_tasks), _append(batch.next_obs, alpha, max_tasks)
    return batch._replace(obs=obs, next_obs=next_obs)

  def critic(critic_params, params, state, batch, task_id, key):
    key_alpha, key = jax.random.split(key)
    rows = batch.obs.shape[0]
    alpha = acting_mixture(key_alpha, state.num_anchors, max_tasks, rows, c.peaked)
    return losses.critic(critic_params, params, state, at_points(batch, alpha), task_id, key)

  def actor(actor_params, params, state, batch, task_id, key):
    key_alpha, key = jax.random.split(key)
    shape = batch.obs.shape[:-1]
    alpha = sample_alpha(key_alpha, state.num_anchors, max_tasks, shape, c.peaked)
    return losses.actor(actor_params, params, state, at_points(batch, alpha), task_id, key)

  return losses._replace(critic=critic, actor=actor)


def init(max_tasks: int, num_envs: int, key, params) -> SubspaceState:
  del key, params
  zeros = jnp.zeros((max_tasks, max_tasks))
  return SubspaceState(
    num_anchors=jnp.int32(1),
    task_alpha=zeros,
    trained=jnp.zeros(max_tasks, bool),
    acting_alpha=jnp.zeros((num_envs, max_tasks)).at[:, 0].set(1.0),
    acting_steps=jnp.int32(0),
    kept_anchor=jnp.zeros(max_tasks, bool),
  )


def begin_task(max_tasks: int, params, state: SubspaceState, ctx: base.TaskContext):
  """From the second task on: a new anchor at the mean of the active ones, and a fresh critic
  (the reference re-initialises it whenever the subspace grows)."""
  task_id = ctx.task_id
  n = jnp.where(task_id > 0, state.num_anchors + 1, state.num_anchors)
  n = jnp.minimum(n, max_tasks)
  active = (jnp.arange(max_tasks) < state.num_anchors).astype(jnp.float32)

  def add_anchor(leaf):
    mean = jnp.tensordot(active, leaf, axes=1) / jnp.sum(active)
    return leaf.at[n - 1].set(jnp.where(n > state.num_anchors, mean, leaf[n - 1]))

  anchors = jax.tree.map(add_anchor, params.actor["params"])
  actor = {**params.actor, "params": anchors}
  fresh = ctx.init_critic(ctx.key)
  critic = jax.tree.map(lambda f, c: jnp.where(task_id > 0, f, c), fresh, params.critic)
  params = params._replace(actor=actor, critic=critic, target_critic=critic)
  return params, state._replace(num_anchors=n, acting_steps=jnp.int32(0))


def act(c: CSPConfig, max_tasks: int, networks, actor_params, state, obs, task_id, key):
  """Every ``repeat_alpha`` steps each env draws a new point: the first half of the envs in
  the new subspace, the others flat over the old anchors (the reference's split; with one
  anchor, all in the new subspace)."""
  redraw = state.acting_steps % c.repeat_alpha == 0
  fresh = acting_mixture(key, state.num_anchors, max_tasks, obs.shape[0], c.peaked)
  alpha = jnp.where(redraw, fresh, state.acting_alpha)
  mu, log_std = networks.actor.apply(actor_params, _append(obs, alpha, max_tasks), task_id)
  return mu, log_std, state._replace(acting_alpha=alpha, acting_steps=state.acting_steps + 1)


def mask_grads(max_tasks: int, grads, state: SubspaceState, task_id):
  """Only the newest anchor learns; the bare-observation point never does."""
  del task_id
  newest = jnp.arange(max_tasks) == state.num_anchors - 1
  masked = jax.tree.map(
    lambda g: g * newest.reshape(-1, *[1] * (g.ndim - 1)).astype(g.dtype), grads["params"]
  )
  return {**grads, "params": masked, "subspace": jax.tree.map(jnp.zeros_like, grads["subspace"])}


def end_task(c: CSPConfig, max_tasks: int, params, state: SubspaceState, ctx: base.TaskContext):
  """The alpha search in the grown subspace and in the one before it; the new anchor is
  kept only if its point's return beats the old subspace's by the improvement threshold."""
  key_new, key_old, key_states, key_eval_new, key_eval_old = jax.random.split(ctx.key, 5)
  obs = replay_lib.sample(ctx.replay, key_states, c.critic_states).obs
  task_id, n = ctx.task_id, state.num_anchors
  search = functools.partial(best_point, c, max_tasks, ctx.networks, params, obs, task_id)
  best_new = search(key_new, n)
  best_old = search(key_old, jnp.maximum(n - 1, 1))
  return_new = ctx.evaluate(with_alpha(params.actor, best_new), task_id, key_eval_new)
  return_old = ctx.evaluate(with_alpha(params.actor, best_old), task_id, key_eval_old)
  keep = (n == 1) | (return_new > return_old + c.improvement_threshold * jnp.abs(return_old))
  state = state._replace(
    num_anchors=jnp.where(keep, n, n - 1),
    task_alpha=state.task_alpha.at[task_id].set(jnp.where(keep, best_new, best_old)),
    trained=state.trained.at[task_id].set(True),
    kept_anchor=state.kept_anchor.at[task_id].set(keep),
  )
  metrics = {
    "csp/return_new": return_new,
    "csp/return_old": return_old,
    "csp/kept": keep,
    base.POLICY_PARAMS: policy_size(max_tasks, params.actor, state, ctx.num_tasks),
  }
  return params, state, metrics


def best_point(c: CSPConfig, max_tasks: int, networks, params, obs, task_id, key, num_active):
  """Of ``alpha_candidates`` points drawn uniformly in the first ``num_active`` anchors'
  simplex, the one whose greedy action the critic values most on ``obs``."""

  def critic_value(alpha):
    mu, _ = networks.actor.apply(with_alpha(params.actor, alpha), obs, task_id)
    q = networks.critic.apply(params.critic, _append(obs, alpha, max_tasks), jnp.tanh(mu))
    return jnp.mean(jnp.min(q, axis=0))

  points = sample_alpha(key, num_active, max_tasks, (c.alpha_candidates,), False)
  values = jax.lax.map(critic_value, points, batch_size=min(c.alpha_candidates, 64))
  return points[jnp.argmax(values)]


def eval_params(c: CSPConfig, max_tasks: int, params, state: SubspaceState, task_id):
  """A finished task's point; otherwise the mean of the training distribution."""
  index = jnp.arange(max_tasks)
  n = state.num_anchors
  concentration = jnp.where(c.peaked & (index == n - 1), n**2, 1.0) * (index < n)
  mean = concentration / jnp.sum(concentration)
  alpha = jnp.where(state.trained[task_id], state.task_alpha[task_id], mean)
  return with_alpha(params.actor, alpha)


def policy_size(max_tasks: int, actor_params, state: SubspaceState, num_tasks):
  """The model size: the anchors kept and one stored point per task (traced)."""
  per_anchor = base.num_params(actor_params["params"]) // max_tasks
  return state.num_anchors * per_anchor + jnp.maximum(num_tasks, 1) * max_tasks
