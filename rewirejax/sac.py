"""Soft actor-critic losses and the fused gradient update (SPEC §3).

Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905: the critic
target (Eq. 3 with the entropy term), the actor objective (Eq. 7) and the temperature objective
(Eq. 18), with a twin critic and a polyak-averaged target critic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from rewirejax import replay as replay_lib
from rewirejax.config import SACConfig
from rewirejax.networks import AgentParams, sample_tanh_gaussian
from rewirejax.types import Array, Metrics, Params, PRNGKey, TaskId, Transition


class ActorAux(NamedTuple):
  """The actor loss's auxiliary output."""

  mean_log_prob: Array  # For the temperature loss: one actor forward serves both.
  metrics: Metrics
  mu: Array  # [B, act_dim] the policy's pre-tanh mean (for distillation)...
  log_std: Array  # ...and log-std, as differentiable outputs of the same forward pass.


PolicyFn = Callable[[Params, Array, TaskId, PRNGKey], tuple[Array, Array]]
"""(actor_params, obs [B, O], task_id, key) -> (mu, log_std) [B, A]: the training forward."""


class SACLosses(NamedTuple):
  """The three SAC losses; a method may transform them (``Method.make_losses``).

  Attributes:
    critic: (critic_params, agent_params, method_state, batch, task_id, key) -> (loss, metrics).
    actor: (actor_params, agent_params, method_state, batch, task_id, key) -> (loss, ActorAux).
    alpha: (log_alpha, mean log-prob) -> loss.
  SAC ignores ``method_state``; a method's transformed losses may read traced settings from it
  (swept coefficients, CSP's anchor count).
  """

  critic: Callable[..., tuple[Array, Metrics]]
  actor: Callable[..., tuple[Array, ActorAux]]
  alpha: Callable[[Array, Array], Array]


class LearnerState(NamedTuple):
  params: AgentParams
  actor_opt: optax.OptState
  critic_opt: optax.OptState
  alpha_opt: optax.OptState
  critic_steps: Array  # int32, counts critic updates in this task (target-update delay).


class Optimizers(NamedTuple):
  actor: optax.GradientTransformation
  critic: optax.GradientTransformation
  alpha: optax.GradientTransformation


def make_optimizers(
  cfg: SACConfig, actor: optax.GradientTransformationExtraArgs | None = None
) -> Optimizers:
  """Adam for the critic and the temperature; ``actor`` (a method's ``actor_optimizer``,
  given ``method_state`` and ``task_id`` as extra args) or Adam for the actor."""
  actor = optax.adam(cfg.actor_lr) if actor is None else actor
  return Optimizers(actor, optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr))


def init_learner(params: AgentParams, optimizers: Optimizers) -> LearnerState:
  """Fresh Adam states (the reference re-creates its optimizers every task)."""
  return LearnerState(
    params,
    optimizers.actor.init(params.actor),
    optimizers.critic.init(params.critic),
    optimizers.alpha.init(params.log_alpha),
    jnp.int32(0),
  )


def make_losses(
  policy: PolicyFn,
  critic: Callable[[Params, Array, Array], Array],
  cfg: SACConfig,
  action_size: int,
) -> SACLosses:
  """SAC losses of the training forward ``policy`` and the twin critic's ``critic(params, obs,
  action) -> [2, B]``."""
  target_entropy = -cfg.target_entropy_multiplier * action_size

  def critic_loss(critic_params, params: AgentParams, method_state, batch, task_id, key):
    """sum_{i=1,2} mean_b (Q_i(s, a) - y)^2 with the soft target
    y = scale r + gamma (1 - d) (min_i Q'_i(s', a') - alpha log pi(a'|s')), a' ~ pi(s') from
    the training forward."""
    del method_state  # SAC's own losses read nothing of a method.
    mu, log_std = policy(params.actor, batch.next_obs, task_id, key)
    next_action, next_log_prob = sample_tanh_gaussian(mu, log_std, key, cfg.tanh_log_det)
    next_q = jnp.min(critic(params.target_critic, batch.next_obs, next_action), 0)
    done = batch.terminal
    if cfg.truncation_is_terminal:
      done = jnp.maximum(done, batch.truncated)
    alpha = jnp.exp(params.log_alpha)
    target = cfg.reward_scaling * batch.reward + cfg.discount * (1.0 - done) * (
      next_q - alpha * next_log_prob
    )
    q = critic(critic_params, batch.obs, batch.action)  # [2, B]
    loss = jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=-1))
    return loss, {"critic/loss": loss, "critic/q": jnp.mean(q)}

  def actor_loss(actor_params, params: AgentParams, method_state, batch, task_id, key):
    """mean_b [alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi(s) reparameterised.

    Returns the loss and ``ActorAux``."""
    del method_state  # SAC's own losses read nothing of a method.
    mu, log_std = policy(actor_params, batch.obs, task_id, key)
    action, log_prob = sample_tanh_gaussian(mu, log_std, key, cfg.tanh_log_det)
    q = jnp.min(critic(params.critic, batch.obs, action), 0)
    alpha = jnp.exp(jax.lax.stop_gradient(params.log_alpha))
    loss = jnp.mean(alpha * log_prob - q)
    mean_log_prob = jnp.mean(log_prob)
    metrics = {"actor/loss": loss, "actor/entropy": -mean_log_prob}
    return loss, ActorAux(mean_log_prob, metrics, mu, log_std)

  def alpha_loss(log_alpha, mean_log_prob):
    """-alpha (mean log pi + target entropy), the log-prob held fixed (Eq. 18)."""
    return -jnp.exp(log_alpha) * jax.lax.stop_gradient(mean_log_prob + target_entropy)

  return SACLosses(critic_loss, actor_loss, alpha_loss)


def losses_of(networks, cfg: SACConfig, action_size: int) -> Callable[[PolicyFn], SACLosses]:
  """``policy -> make_losses(policy, networks.critic.apply, cfg, action_size)``: what a
  method's loss transform is handed (``Method.make_losses``)."""
  return lambda policy: make_losses(policy, networks.critic.apply, cfg, action_size)


def make_update_group(
  losses: SACLosses,
  optimizers: Optimizers,
  cfg: SACConfig,
) -> Callable[
  [LearnerState, replay_lib.ReplayState, Any, TaskId, PRNGKey], tuple[LearnerState, Metrics]
]:
  """One group of ``policy_update_delay`` critic steps followed by one actor+alpha step.

  Grouping makes the policy delay static (no ``cond`` that ``vmap`` would turn into
  computing both branches). The target critic moves every ``target_update_delay`` critic
  steps (a cheap masked polyak update).
  """

  def critic_step(learner: LearnerState, method_state, batch: Transition, task_id, key):
    params = learner.params
    grads, metrics = jax.grad(losses.critic, has_aux=True)(
      params.critic, params, method_state, batch, task_id, key
    )
    updates, critic_opt = optimizers.critic.update(grads, learner.critic_opt)
    critic = optax.apply_updates(params.critic, updates)
    critic_steps = learner.critic_steps + 1
    move_target = (critic_steps % cfg.target_update_delay == 0).astype(jnp.float32)
    target_critic = jax.tree.map(
      lambda t, c: t + move_target * cfg.polyak * (c - t), params.target_critic, critic
    )
    params = params._replace(critic=critic, target_critic=target_critic)
    return learner._replace(
      params=params, critic_opt=critic_opt, critic_steps=critic_steps
    ), metrics

  def actor_step(learner: LearnerState, method_state, batch: Transition, task_id, key):
    params = learner.params

    def actor_loss(actor_params):
      loss, aux = losses.actor(actor_params, params, method_state, batch, task_id, key)
      return loss, (aux.mean_log_prob, aux.metrics)

    grads, (mean_log_prob, metrics) = jax.grad(actor_loss, has_aux=True)(params.actor)
    updates, actor_opt = optimizers.actor.update(
      grads, learner.actor_opt, params.actor, method_state=method_state, task_id=task_id
    )
    actor = optax.apply_updates(params.actor, updates)
    alpha_loss, alpha_grad = jax.value_and_grad(losses.alpha)(params.log_alpha, mean_log_prob)
    alpha_updates, alpha_opt = optimizers.alpha.update(alpha_grad, learner.alpha_opt)
    log_alpha = optax.apply_updates(params.log_alpha, alpha_updates)
    metrics = {**metrics, "alpha/loss": alpha_loss, "alpha/value": jnp.exp(log_alpha)}
    params = params._replace(actor=actor, log_alpha=log_alpha)
    return learner._replace(params=params, actor_opt=actor_opt, alpha_opt=alpha_opt), metrics

  def update_group(learner, replay, method_state, task_id, key):
    """``policy_update_delay`` critic steps, each on a fresh batch; the actor and temperature
    step reuses the last critic step's batch (as the reference does within one iteration)."""
    key_batches, key_critic, key_actor = jax.random.split(key, 3)
    batches = jax.vmap(lambda k: replay_lib.sample(replay, k, cfg.batch_size))(
      jax.random.split(key_batches, cfg.policy_update_delay)
    )
    critic_keys = jax.random.split(key_critic, cfg.policy_update_delay)
    if cfg.policy_update_delay == 1:  # No loop for the common case.
      first = jax.tree.map(lambda x: x[0], (batches, critic_keys))
      learner, critic_metrics = critic_step(learner, method_state, first[0], task_id, first[1])
    else:
      learner, critic_metrics = jax.lax.scan(
        lambda learner, xs: critic_step(learner, method_state, xs[0], task_id, xs[1]),
        learner,
        (batches, critic_keys),
      )
      critic_metrics = jax.tree.map(jnp.mean, critic_metrics)
    last_batch = jax.tree.map(lambda x: x[-1], batches)
    learner, actor_metrics = actor_step(learner, method_state, last_batch, task_id, key_actor)
    return learner, {**critic_metrics, **actor_metrics}

  return update_group
