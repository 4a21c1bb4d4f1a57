"""SAC losses and the tanh-Gaussian against slow NumPy references on a fixed batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewirejax import networks as networks_lib
from rewirejax import sac
from rewirejax.config import SACConfig
from rewirejax.types import Transition

OBS, ACT, B = 5, 3, 16


def np_tanh_gaussian(mu, log_std, eps):
  """log pi(tanh(u)) = sum_i log N(u_i; mu_i, std_i) - log(1 - tanh(u_i)^2)."""
  mu, log_std, eps = (np.asarray(a, np.float64) for a in (mu, log_std, eps))
  std = np.exp(log_std)
  u = mu + std * eps
  log_normal = -0.5 * ((u - mu) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
  return np.tanh(u), np.sum(log_normal - np.log(1 - np.tanh(u) ** 2), axis=-1)


@pytest.fixture(scope="module")
def setup():
  cfg = SACConfig(discount=0.9, reward_scaling=2.0, target_entropy_multiplier=2.0)
  nets = networks_lib.make_sac_networks(OBS, ACT, num_heads=2, hidden_sizes=(16, 16))
  params = networks_lib.init_agent_params(nets, jax.random.key(0), OBS, ACT, 0.7)
  # A target critic that differs from the critic.
  other = networks_lib.init_agent_params(nets, jax.random.key(9), OBS, ACT, 0.7)
  params = params._replace(target_critic=other.critic)
  keys = jax.random.split(jax.random.key(1), 6)
  batch = Transition(
    obs=jax.random.normal(keys[0], (B, OBS)),
    action=jax.random.uniform(keys[1], (B, ACT), minval=-1, maxval=1),
    reward=jax.random.normal(keys[2], (B,)),
    next_obs=jax.random.normal(keys[3], (B, OBS)),
    terminal=(jax.random.uniform(keys[4], (B,)) < 0.3).astype(jnp.float32),
    truncated=(jax.random.uniform(keys[5], (B,)) < 0.3).astype(jnp.float32),
  )
  return cfg, nets, params, batch


def test_reference_log_det_is_half_the_correction_plus_log_2_per_dimension():
  key = jax.random.key(2)
  mu = jax.random.normal(jax.random.key(3), (B, ACT))
  log_std = jax.random.uniform(jax.random.key(4), (B, ACT), minval=-2, maxval=0.5)
  action, exact = networks_lib.sample_tanh_gaussian(mu, log_std, key)
  _, reference = networks_lib.sample_tanh_gaussian(mu, log_std, key, "reference")
  del action
  eps = np.asarray(jax.random.normal(key, mu.shape), np.float64)
  std = np.exp(np.asarray(log_std, np.float64))
  u = np.asarray(mu, np.float64) + std * eps
  log_normal = np.sum(-0.5 * eps**2 - np.log(std) - 0.5 * np.log(2 * np.pi), -1)
  log_det = np.log(1 - np.tanh(u) ** 2)  # The exact correction: exact = log_normal - sum.
  np.testing.assert_allclose(exact, log_normal - np.sum(log_det, -1), rtol=1e-3, atol=1e-3)
  want = log_normal - np.sum(0.5 * log_det + np.log(2.0), -1)
  np.testing.assert_allclose(reference, want, rtol=1e-3, atol=1e-3)


def test_tanh_gaussian_log_prob_matches_closed_form():
  key = jax.random.key(2)
  mu = jax.random.normal(jax.random.key(3), (B, ACT))
  log_std = jax.random.uniform(jax.random.key(4), (B, ACT), minval=-2, maxval=0.5)
  action, log_prob = networks_lib.sample_tanh_gaussian(mu, log_std, key)
  want_action, want_log_prob = np_tanh_gaussian(mu, log_std, jax.random.normal(key, mu.shape))
  np.testing.assert_allclose(action, want_action, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(log_prob, want_log_prob, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("truncation_is_terminal", [False, True])
def test_critic_loss_matches_numpy(setup, truncation_is_terminal):
  cfg, nets, params, batch = setup
  cfg = cfg.__class__(**{**cfg.__dict__, "truncation_is_terminal": truncation_is_terminal})
  losses = sac.losses_of(nets, cfg, ACT)(nets.policy)
  key, task = jax.random.key(5), jnp.int32(1)
  loss, _ = losses.critic(params.critic, params, None, batch, task, key)

  mu, log_std = nets.actor.apply(params.actor, batch.next_obs, task)
  next_action, next_log_prob = np_tanh_gaussian(mu, log_std, jax.random.normal(key, mu.shape))
  next_q = np.asarray(
    nets.critic.apply(params.target_critic, batch.next_obs, jnp.asarray(next_action, jnp.float32))
  )
  done = np.asarray(batch.terminal)
  if truncation_is_terminal:
    done = np.maximum(done, np.asarray(batch.truncated))
  alpha = np.exp(float(params.log_alpha))
  target = 2.0 * np.asarray(batch.reward) + 0.9 * (1 - done) * (
    next_q.min(0) - alpha * next_log_prob
  )
  q = np.asarray(nets.critic.apply(params.critic, batch.obs, batch.action))
  want = sum(np.mean((q[i] - target) ** 2) for i in range(2))
  np.testing.assert_allclose(loss, want, rtol=1e-4)


def test_actor_and_alpha_losses_match_numpy(setup):
  cfg, nets, params, batch = setup
  losses = sac.losses_of(nets, cfg, ACT)(nets.policy)
  key, task = jax.random.key(6), jnp.int32(0)
  loss, aux = losses.actor(params.actor, params, None, batch, task, key)
  mean_log_prob = aux.mean_log_prob

  mu, log_std = nets.actor.apply(params.actor, batch.obs, task)
  action, log_prob = np_tanh_gaussian(mu, log_std, jax.random.normal(key, mu.shape))
  q = np.asarray(nets.critic.apply(params.critic, batch.obs, jnp.asarray(action, jnp.float32)))
  alpha = np.exp(float(params.log_alpha))
  np.testing.assert_allclose(loss, np.mean(alpha * log_prob - q.min(0)), rtol=1e-4)
  np.testing.assert_allclose(mean_log_prob, np.mean(log_prob), rtol=1e-4)

  alpha_loss = losses.alpha(params.log_alpha, mean_log_prob)
  target_entropy = -2.0 * ACT
  np.testing.assert_allclose(alpha_loss, -alpha * (np.mean(log_prob) + target_entropy), rtol=1e-4)
  # Temperature autotune sign: entropy below target (log pi high) -> alpha grows.
  grad_low_entropy = jax.grad(losses.alpha)(params.log_alpha, jnp.float32(10.0))
  grad_high_entropy = jax.grad(losses.alpha)(params.log_alpha, jnp.float32(-10.0))
  assert grad_low_entropy < 0 < grad_high_entropy


def test_actor_heads_are_selected_by_traced_task_id(setup):
  _, nets, params, batch = setup
  head = params.actor["params"]
  kernel, bias = head["head_kernel"], head["head_bias"] + 0.1
  actor = {
    "params": {
      **head,
      "head_kernel": kernel.at[1].set(-kernel[0]),
      "head_bias": bias.at[1].set(-bias[0]),
    }
  }
  apply = jax.jit(nets.actor.apply)
  mu0, _ = apply(actor, batch.obs, jnp.int32(0))
  mu1, _ = apply(actor, batch.obs, jnp.int32(1))
  np.testing.assert_allclose(mu1, -mu0, atol=1e-6)
  assert not np.allclose(mu0, 0.0)
