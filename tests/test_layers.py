"""Tests of rewirejax.layers against slow, explicit references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from flax import linen as nn
from flax import nnx

from rewirejax import layers

N = 8


def reference_permute(x, scores, tau):
  """The reference code's straight-through permutation, literally: ``x @ P.T`` with
  ``P = hard + soft - stop_gradient(soft)``; its value is the hard permutation, its
  gradient with respect to the scores is the relaxation's."""
  return x @ straight_through_matrix(scores, tau).T


def reference_permute_transposed(x, scores, tau):
  """``x @ P`` with the same straight-through ``P`` (the reference's alignment adapters)."""
  return x @ straight_through_matrix(scores, tau)


def straight_through_matrix(scores, tau):
  """The reference's ``hard + soft - stop_gradient(soft)`` [n, n] (its value is ``hard``)."""
  soft = layers.softsort(scores, tau)
  hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), scores.shape[-1], dtype=soft.dtype)
  return hard + soft - jax.lax.stop_gradient(soft)


def slow_softsort(scores, tau):
  """Row i = softmax_j(-|sort(s)_i - s_j| / tau), written out with loops in NumPy."""
  scores = np.asarray(scores, np.float64)
  sorted_scores = np.sort(scores)
  out = np.zeros((len(scores), len(scores)))
  for i, s_i in enumerate(sorted_scores):
    logits = np.array([-abs(s_i - s_j) / tau for s_j in scores])
    weights = np.exp(logits - logits.max())
    out[i] = weights / weights.sum()
  return out


def random_inputs(seed, batch_shape, n=N):
  key_x, key_s, key_g = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(key_x, (*batch_shape, n))
  scores = jax.random.uniform(key_s, (n,))
  cotangent = jax.random.normal(key_g, (*batch_shape, n))
  return x, scores, cotangent


class SoftSortTest(parameterized.TestCase):
  @parameterized.parameters(0.05, 0.3, 1.0, 3.0)
  def test_matches_loop_reference(self, tau):
    scores = jax.random.normal(jax.random.key(0), (N,))
    np.testing.assert_allclose(layers.softsort(scores, tau), slow_softsort(scores, tau), atol=1e-6)

  def test_rows_sum_to_one_with_batch_axes(self):
    scores = jax.random.normal(jax.random.key(1), (3, 2, N))
    soft = layers.softsort(scores, 0.5)
    chex.assert_shape(soft, (3, 2, N, N))
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-6)

  def test_small_tau_tends_to_hard_permutation(self):
    order = np.random.default_rng(0).permutation(N)
    scores = jnp.asarray(layers.scores_of(jnp.asarray(order, jnp.int32)))  # Gap 1/(N-1).
    hard = np.eye(N)[np.argsort(scores)]
    errors = [np.abs(layers.softsort(scores, tau) - hard).max() for tau in (1.0, 0.1, 0.01, 1e-3)]
    self.assertTrue(np.all(np.diff(errors) < 0), errors)
    self.assertLess(errors[-1], 1e-6)

  @parameterized.parameters(0.05, 0.3, 1.0, 3.0)
  def test_hand_written_pullback_equals_autodiff(self, tau):
    # Distinct scores: at a tie the subgradient of |d| at 0 is a convention (here 0, as
    # PyTorch's; JAX's autodiff takes 1).
    scores = jnp.array([0.3, 0.9, 0.1, 0.35, 0.5, 0.0, 0.75, 0.2])
    cotangent = jax.random.normal(jax.random.key(2), (N, N))
    _, pullback = jax.vjp(lambda s: layers.softsort(s, tau), scores)
    order = jnp.argsort(scores, stable=True)
    got = jax.jit(layers._softsort_pullback)(scores, order, jnp.float32(tau), cotangent)
    np.testing.assert_allclose(got, pullback(cotangent)[0], rtol=1e-5, atol=1e-5)

  def test_rejects_nonpositive_tau(self):
    with pytest.raises(ValueError, match="tau must be > 0"):
      layers.softsort(jnp.zeros(N), 0.0)


class PermuteTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((), (5,), (2, 3))
  def test_forward_is_integer_gather_bit_for_bit(self, *batch_shape):
    x, scores, _ = random_inputs(0, batch_shape)
    out = self.variant(layers.permute)(x, scores, 0.5)
    expected = np.asarray(x)[..., np.argsort(np.asarray(scores), kind="stable")]
    np.testing.assert_array_equal(out, expected)

  def test_ties_give_a_valid_stable_permutation(self):
    scores = jnp.array([0.5, 0.1, 0.5, 0.1])
    np.testing.assert_array_equal(layers.wiring_of(scores), [1, 3, 0, 2])
    np.testing.assert_array_equal(layers.permute(jnp.arange(4.0), scores), [1.0, 3.0, 0.0, 2.0])

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(tau=(0.05, 0.3, 1.0, 3.0), batch_shape=((), (4,), (2, 3)))
  def test_vjp_equals_softsort_reference(self, tau, batch_shape):
    x, scores, cotangent = random_inputs(1, batch_shape)

    def vjp(fn):
      _, pullback = jax.vjp(lambda x, s: fn(x, s, tau), x, scores)
      return pullback(cotangent)

    got = self.variant(lambda: vjp(layers.permute))()
    want = vjp(reference_permute)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)

  @parameterized.product(tau=(0.05, 1.0), batch_shape=((), (4,), (2, 3)))
  def test_transposed_forward_and_vjp_equal_the_reference(self, tau, batch_shape):
    x, scores, cotangent = random_inputs(11, batch_shape)
    out = jax.jit(lambda x, s: layers.permute(x, s, tau, transpose=True))(x, scores)
    order = layers.wiring_of(scores)
    np.testing.assert_array_equal(out, layers.apply_wiring(x, layers.invert(order)))

    def vjp(fn):
      _, pullback = jax.vjp(lambda x, s: fn(x, s, tau), x, scores)
      return pullback(cotangent)

    got = jax.jit(lambda: vjp(lambda x, s, t: layers.permute(x, s, t, transpose=True)))()
    chex.assert_trees_all_close(got, vjp(reference_permute_transposed), rtol=1e-5, atol=1e-5)

  @parameterized.parameters(0.1, 1.0)
  def test_vjp_under_vmap_over_modes(self, tau):
    x, _, _ = random_inputs(2, (5,))
    mode_scores = jax.random.uniform(jax.random.key(3), (3, N))
    weights = jax.random.normal(jax.random.key(4), (3, 5, N))

    def loss(fn, x, mode_scores):
      outs = jax.vmap(fn, in_axes=(None, 0, None))(x, mode_scores, tau)  # [K, 5, N]
      return jnp.sum(weights * jnp.tanh(outs))

    got = jax.jit(jax.grad(lambda *a: loss(layers.permute, *a), argnums=(0, 1)))(x, mode_scores)
    want = jax.grad(lambda *a: loss(reference_permute, *a), argnums=(0, 1))(x, mode_scores)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)

  def test_vjp_under_vmap_over_batched_scores(self):
    x, _, cotangent = random_inputs(5, (4, 6))
    scores = jax.random.uniform(jax.random.key(6), (4, N))
    batched = jax.vmap(layers.permute, in_axes=(0, 0, None))
    batched_reference = jax.vmap(reference_permute, in_axes=(0, 0, None))
    _, pullback = jax.vjp(lambda x, s: batched(x, s, 0.3), x, scores)
    _, pullback_reference = jax.vjp(lambda x, s: batched_reference(x, s, 0.3), x, scores)
    chex.assert_trees_all_close(
      jax.jit(pullback)(cotangent), pullback_reference(cotangent), rtol=1e-5, atol=1e-5
    )

  def test_vjp_inside_scan(self):
    x, scores, _ = random_inputs(7, (3,))
    step_weights = jax.random.normal(jax.random.key(8), (4, 3, N))

    def rollout(fn, x, scores):
      def step(carry, weights):
        out = fn(carry, scores, 0.5)
        return jnp.tanh(out) * weights, jnp.sum(out * weights)

      _, per_step = jax.lax.scan(step, x, step_weights)
      return per_step.sum()

    got = jax.jit(jax.grad(lambda *a: rollout(layers.permute, *a), argnums=(0, 1)))(x, scores)
    want = jax.grad(lambda *a: rollout(reference_permute, *a), argnums=(0, 1))(x, scores)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)

  def test_traced_tau_gets_zero_gradient_and_no_retrace(self):
    x, scores, _ = random_inputs(9, (2,))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def grads(tau):
      return jax.grad(lambda s, t: layers.permute(x, s, t).sum() ** 2, argnums=(0, 1))(scores, tau)

    g_small, g_tau = grads(jnp.float32(0.1))
    g_large, _ = grads(jnp.float32(2.0))
    self.assertEqual(float(g_tau), 0.0)
    self.assertFalse(np.allclose(g_small, g_large))

  def test_rejects_bad_inputs(self):
    with pytest.raises(ValueError, match="cannot permute"):
      layers.permute(jnp.zeros((2, N)), jnp.zeros(N + 1))
    with pytest.raises(ValueError, match="must be a vector"):
      layers.permute(jnp.zeros((2, N)), jnp.zeros((2, N)))
    with pytest.raises(ValueError, match="tau must be > 0"):
      layers.permute(jnp.zeros(N), jnp.zeros(N), tau=-1.0)


class WiringTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.a = jnp.asarray(rng.permutation(N), jnp.int32)
    self.b = jnp.asarray(rng.permutation(N), jnp.int32)
    self.x = jnp.asarray(rng.normal(size=(3, N)), jnp.float32)

  def test_compose_with_inverse_is_identity(self):
    identity = np.arange(N)
    np.testing.assert_array_equal(layers.compose(self.a, layers.invert(self.a)), identity)
    np.testing.assert_array_equal(layers.compose(layers.invert(self.a), self.a), identity)

  def test_apply_twice_equals_apply_composed(self):
    twice = layers.apply_wiring(layers.apply_wiring(self.x, self.a), self.b)
    once = layers.apply_wiring(self.x, layers.compose(self.a, self.b))
    np.testing.assert_array_equal(twice, once)
    np.testing.assert_array_equal(
      once, np.asarray(self.x)[:, np.asarray(self.a)[np.asarray(self.b)]]
    )

  def test_apply_wiring_is_matrix_product_with_row_gathered_identity(self):
    p = np.eye(N)[np.asarray(self.a)]  # P = I[z, :], Eq. 3.
    np.testing.assert_allclose(layers.apply_wiring(self.x, self.a), self.x @ p.T, atol=1e-6)

  def test_scores_round_trip(self):
    np.testing.assert_array_equal(layers.wiring_of(layers.scores_of(self.a)), self.a)
    scores = layers.scores_of(self.a)
    self.assertEqual(float(scores.min()), 0.0)
    self.assertEqual(float(scores.max()), 1.0)
    np.testing.assert_allclose(
      layers.scores_of(jnp.arange(N, dtype=jnp.int32)), np.linspace(0, 1, N), atol=1e-7
    )

  def test_helpers_broadcast_over_leading_axes(self):
    stacked = jnp.stack([self.a, self.b])  # [2, N], e.g. cached wirings of two tasks.
    np.testing.assert_array_equal(layers.invert(stacked)[1], layers.invert(self.b))
    np.testing.assert_array_equal(
      layers.compose(stacked, self.b)[0], layers.compose(self.a, self.b)
    )
    np.testing.assert_array_equal(
      layers.apply_wiring(self.x[:2], stacked)[1], layers.apply_wiring(self.x[1], self.b)
    )
    np.testing.assert_array_equal(layers.wiring_of(layers.scores_of(stacked)), stacked)

  def test_wiring_of_is_int32(self):
    self.assertEqual(layers.wiring_of(jnp.zeros(N)).dtype, jnp.int32)

  @parameterized.parameters(
    ([0, 1, 1, 3],), ([0, 1, 2, 4],), ([0.0, 1.0, 2.0, 3.0],), ([-1, 0, 1, 2],)
  )
  def test_rejects_non_permutations(self, bad):
    bad = jnp.asarray(bad)
    with pytest.raises(ValueError, match="wiring"):
      layers.apply_wiring(jnp.zeros(4), bad)
    with pytest.raises(ValueError, match="wiring"):
      layers.invert(bad)
    with pytest.raises(ValueError, match="wiring"):
      layers.compose(jnp.arange(4), bad)

  def test_rejects_wrong_length(self):
    with pytest.raises(ValueError, match="cannot gather"):
      layers.apply_wiring(jnp.zeros(N), jnp.arange(N - 1))


def regression_data(key, num_inputs=4, num_outputs=2, num_samples=64):
  key_x, key_w = jax.random.split(key)
  inputs = jax.random.normal(key_x, (num_samples, num_inputs))
  targets = jnp.sin(inputs @ jax.random.normal(key_w, (num_inputs, num_outputs)))
  return inputs, targets


class LinenPermutedDenseTest(parameterized.TestCase):
  def test_params_and_identity_init(self):
    layer = layers.PermutedDense(features=N, num_modes=3)
    params = layer.init(jax.random.key(0), jnp.zeros((2, 5)))["params"]
    chex.assert_shape([params["kernel"], params["bias"], params["scores"]], [(5, N), (N,), (3, N)])
    np.testing.assert_allclose(params["scores"], np.tile(np.linspace(0, 1, N), (3, 1)), atol=1e-7)
    # Identity wiring at init: equal to a plain affine map.
    x = jax.random.normal(jax.random.key(1), (2, 5))
    out = layer.apply({"params": params}, x)
    np.testing.assert_allclose(out, x @ params["kernel"] + params["bias"], rtol=1e-6)

  def test_traced_mode_selects_score_row(self):
    layer = layers.PermutedDense(features=N, num_modes=3)
    x = jax.random.normal(jax.random.key(2), (4, 5))
    params = layer.init(jax.random.key(0), x)["params"]
    rows = jax.random.uniform(jax.random.key(3), (3, N))
    params = {**params, "scores": rows}
    affine = x @ params["kernel"] + params["bias"]
    apply = jax.jit(lambda mode: layer.apply({"params": params}, x, mode=mode))
    for k in range(3):
      np.testing.assert_array_equal(apply(jnp.int32(k)), affine[:, np.argsort(rows[k])])

  def test_wiring_overrides_scores(self):
    layer = layers.PermutedDense(features=N)
    x = jax.random.normal(jax.random.key(4), (4, 5))
    params = layer.init(jax.random.key(0), x)["params"]
    wiring = jnp.asarray(np.random.default_rng(1).permutation(N), jnp.int32)
    out = layer.apply({"params": params}, x, wiring=wiring)
    affine = x @ params["kernel"] + params["bias"]
    np.testing.assert_array_equal(out, affine[:, np.asarray(wiring)])

  def test_training_step_reduces_loss_and_moves_scores(self):
    class Model(nn.Module):
      @nn.compact
      def __call__(self, x, mode=0):
        h = nn.leaky_relu(layers.PermutedDense(32, num_modes=2, tau=0.5)(x, mode), 0.2)
        h = nn.leaky_relu(layers.PermutedDense(32, num_modes=2, tau=0.5)(h, mode), 0.2)
        return nn.Dense(2)(h)

    inputs, targets = regression_data(jax.random.key(5))
    model = Model()
    params = model.init(jax.random.key(6), inputs)
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(params)

    def loss_fn(params, mode):
      return jnp.mean((model.apply(params, inputs, mode) - targets) ** 2)

    @jax.jit
    def train_step(params, opt_state, mode):
      loss, grads = jax.value_and_grad(loss_fn)(params, mode)
      updates, opt_state = optimizer.update(grads, opt_state)
      return optax.apply_updates(params, updates), opt_state, loss

    first_loss = float(loss_fn(params, 0))
    initial_scores = params["params"]["PermutedDense_0"]["scores"]
    for step in range(100):
      params, opt_state, loss = train_step(params, opt_state, jnp.int32(step % 2))
    self.assertLess(float(loss), 0.5 * first_loss)
    self.assertFalse(np.allclose(params["params"]["PermutedDense_0"]["scores"], initial_scores))

  @parameterized.parameters(0, -2)
  def test_rejects_bad_num_modes(self, num_modes):
    with pytest.raises(ValueError, match="num_modes"):
      layers.PermutedDense(features=N, num_modes=num_modes)

  def test_rejects_bad_tau_and_mode(self):
    with pytest.raises(ValueError, match="tau"):
      layers.PermutedDense(features=N, tau=0.0)
    layer = layers.PermutedDense(features=N, num_modes=2)
    params = layer.init(jax.random.key(0), jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="mode must be in"):
      layer.apply(params, jnp.zeros((1, 3)), mode=2)


class NNXPermutedLinearTest(parameterized.TestCase):
  def test_matches_linen_layer_with_same_params(self):
    nnx_layer = layers.PermutedLinear(5, N, num_modes=2, tau=0.3, rngs=nnx.Rngs(0))
    nnx_layer.scores[...] = jax.random.uniform(jax.random.key(1), (2, N))
    params = {
      "kernel": nnx_layer.kernel[...],
      "bias": nnx_layer.bias[...],
      "scores": nnx_layer.scores[...],
    }
    linen_layer = layers.PermutedDense(N, num_modes=2, tau=0.3)
    x = jax.random.normal(jax.random.key(2), (3, 5))
    for k in range(2):
      np.testing.assert_array_equal(
        nnx_layer(x, mode=k), linen_layer.apply({"params": params}, x, k)
      )

  def test_training_step_in_nnx_model(self):
    class Model(nnx.Module):
      def __init__(self, rngs):
        self.hidden = layers.PermutedLinear(4, 32, num_modes=2, tau=0.5, rngs=rngs)
        self.out = nnx.Linear(32, 2, rngs=rngs)

      def __call__(self, x, mode):
        return self.out(nnx.leaky_relu(self.hidden(x, mode), 0.2))

    inputs, targets = regression_data(jax.random.key(7))
    model = Model(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, mode):
      def loss_fn(model):
        return jnp.mean((model(inputs, mode) - targets) ** 2)

      loss, grads = nnx.value_and_grad(loss_fn)(model)
      optimizer.update(model, grads)
      return loss

    initial_scores = np.asarray(model.hidden.scores[...])
    first_loss = float(train_step(model, optimizer, jnp.int32(0)))
    for step in range(100):
      loss = train_step(model, optimizer, jnp.int32(step % 2))
    self.assertLess(float(loss), 0.5 * first_loss)
    self.assertFalse(np.allclose(model.hidden.scores[...], initial_scores))
    wiring = jnp.asarray(np.random.default_rng(2).permutation(32), jnp.int32)
    affine = inputs @ model.hidden.kernel[...] + model.hidden.bias[...]
    np.testing.assert_array_equal(
      model.hidden(inputs, wiring=wiring), affine[:, np.asarray(wiring)]
    )

  def test_rejects_bad_num_modes(self):
    with pytest.raises(ValueError, match="num_modes"):
      layers.PermutedLinear(3, N, num_modes=0, rngs=nnx.Rngs(0))
