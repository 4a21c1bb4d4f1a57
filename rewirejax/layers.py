"""Neuron permutation: SoftSort straight-through permutations of hidden units.

Sun & Mu, "Rewiring Neurons in Non-Stationary Environments", NeurIPS 2023, Eqs. 2-4;
SoftSort from Prillo & Eisenschlos, "SoftSort: A Continuous Relaxation for the argsort
Operator", ICML 2020.

Conventions used throughout rewirejax:

* A *wiring* is an int32 order ``z`` of length ``n``: a permutation of ``0..n-1``.
  Applying it gathers, ``apply_wiring(x, z)[..., i] == x[..., z[i]]``; in matrix form
  this is ``P x`` with ``P = I[z, :]`` (Eq. 3).
* A *score vector* ``v`` of shape ``[n]`` induces the wiring ``argsort(v)`` (a stable
  argsort, so tied scores keep their index order and still give a permutation).

The math lives in pure functions (``softsort``, ``permute`` and the wiring helpers);
``PermutedDense`` (Flax linen) and ``PermutedLinear`` (Flax NNX, named like
``nnx.Linear``) are thin modules over them, so either drops into any Flax model::

    from rewirejax.layers import PermutedDense
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx

Array = jax.Array
Initializer = Any  # A Flax/JAX initializer: (key, shape, dtype) -> Array.


# --------------------------------------------------------------------------------------
# Input checks. They run at trace time on Python values and on concrete arrays only:
# under `jit` the values are tracers and the checks cost nothing.


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_tau(tau: Any) -> None:
  if _is_concrete(tau) and np.any(np.asarray(tau) <= 0):
    raise ValueError(f"SoftSort temperature tau must be > 0, got {tau!r}.")


def _check_num_modes(num_modes: int) -> None:
  if not isinstance(num_modes, (int, np.integer)) or num_modes < 1:
    raise ValueError(f"num_modes must be an int >= 1, got {num_modes!r}.")


def _check_scores_match(x: Array, scores: Array) -> None:
  if jnp.ndim(scores) != 1:
    raise ValueError(
      f"scores must be a vector [n], got shape {jnp.shape(scores)}; "
      "use jax.vmap for a batch of score vectors."
    )
  if jnp.shape(x)[-1:] != jnp.shape(scores):
    raise ValueError(
      f"scores of length {jnp.shape(scores)[0]} cannot permute inputs whose last axis "
      f"has {jnp.shape(x)[-1:] or 'no'} entries (x shape {jnp.shape(x)})."
    )


def check_wiring(wiring: Any) -> None:
  """Raises ValueError unless every row of ``wiring`` [..., n] is a permutation of 0..n-1.

  Tracers pass unchecked (the check needs concrete values); call it outside ``jit``.
  """
  if not _is_concrete(wiring):
    return
  orders = np.asarray(wiring)
  if not np.issubdtype(orders.dtype, np.integer):
    raise ValueError(f"a wiring must hold integers, got dtype {orders.dtype}.")
  if orders.ndim == 0:
    raise ValueError("a wiring must have at least one axis, got a scalar.")
  n = orders.shape[-1]
  if not np.array_equal(np.sort(orders, axis=-1), np.broadcast_to(np.arange(n), orders.shape)):
    raise ValueError(f"wiring is not a permutation of 0..{n - 1}: {orders}")


# --------------------------------------------------------------------------------------
# SoftSort and the straight-through permutation.


def softsort(scores: Array, tau: float | Array) -> Array:
  """The SoftSort relaxation of the permutation matrix ``I[argsort(scores), :]`` (Eq. 4).

  Args:
    scores: [..., n] float score vectors.
    tau: temperature > 0 (a Python number or a traced scalar).

  Returns:
    [..., n, n] row-stochastic matrices; row ``i`` is
    ``softmax_j(-|sort(scores)_i - scores_j| / tau)``. As ``tau -> 0`` (distinct scores)
    it tends to the hard permutation matrix ``I[argsort(scores), :]``.
  """
  _check_tau(tau)
  order = jnp.argsort(scores, axis=-1, stable=True)
  sorted_scores = jnp.take_along_axis(scores, order, axis=-1)
  distances = jnp.abs(sorted_scores[..., :, None] - scores[..., None, :])
  return jax.nn.softmax(-distances / tau, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _permute(x: Array, scores: Array, tau: Array, transpose: bool) -> Array:
  return _permute_fwd(x, scores, tau, transpose)[0]


def _permute_fwd(x: Array, scores: Array, tau: Array, transpose: bool):
  order = jnp.argsort(scores, stable=True)
  gather = _inverse_order(order) if transpose else order
  return jnp.take(x, gather, axis=-1), (x, scores, order, tau)


def _softsort_pullback(scores: Array, order: Array, tau: Array, cotangent: Array) -> Array:
  """The VJP of ``softsort`` [n, n] at ``scores`` [n] (``order = argsort(scores)``).

  With ``d_ij = sort(scores)_i - scores_j``, ``S = softmax_j(-|d_ij| / tau)`` and
  ``A = cotangent``: the softmax pullback is ``S * (A - r)`` with ``r_i = sum_j S_ij A_ij``,
  and ``w = sign(d) * S * (A - r) / tau`` flows to ``scores_j`` (column sums) and, with a
  minus sign, to ``sort(scores)_i`` (row sums), which the inverse order routes back to
  ``scores``. The row maximum of the logits is 0 (the diagonal ``j = order[i]``), so the
  softmax needs no shift. Reductions are mat-vecs: on CPU this runs in about half the time
  of autodiff through ``softsort`` (measured at n = 256).
  """
  n = scores.shape[-1]
  distances = jnp.take(scores, order)[:, None] - scores[None, :]
  ones = jnp.ones((n,), cotangent.dtype)
  unnormalised = jnp.exp(jnp.abs(distances) * (-1.0 / tau))
  soft = unnormalised / (unnormalised @ ones)[:, None]
  row_dot = (soft * cotangent) @ ones
  pulled = jnp.sign(distances) * soft * (cotangent - row_dot[:, None])
  inverse = _inverse_order(order)
  return (ones @ pulled - jnp.take(pulled @ ones, inverse)) / tau


def _inverse_order(order: Array) -> Array:
  """``invert`` without the concrete-value check (for use under tracing)."""
  n = order.shape[-1]
  return jnp.zeros_like(order).at[order].set(jnp.arange(n, dtype=order.dtype))


def _permute_bwd(transpose: bool, residuals, grad_out: Array):
  """VJP of the straight-through ``x @ P.T`` (``x @ P`` with ``transpose``), where
  ``P = H + S - stop_gradient(S)`` (the reference code's matrix).

  ``H = I[order, :]`` is the hard permutation and ``S = softsort(scores, tau)`` its
  relaxation; the matrix's value is ``H``, its gradient ``S``'s. So ``dL/dx = g @ H`` (``g @
  H.T``), the transpose of the forward gather (a gather, no matmul), and ``dL/dS = sum_batch
  g^T x`` (``x^T g``) [n, n], pulled back through ``softsort``. ``x @ H.T`` is never built.
  ``tau`` is a hyperparameter and gets a zero cotangent.
  """
  x, scores, order, tau = residuals
  n = scores.shape[-1]
  gather = order if transpose else _inverse_order(order)
  grad_x = jnp.take(grad_out, gather, axis=-1).astype(x.dtype)
  grad_flat = grad_out.reshape(-1, n).astype(scores.dtype)
  x_flat = x.reshape(-1, n).astype(scores.dtype)
  grad_soft = x_flat.T @ grad_flat if transpose else grad_flat.T @ x_flat
  grad_scores = _softsort_pullback(scores, order, tau, grad_soft)
  return grad_x, grad_scores, jnp.zeros_like(tau)


_permute.defvjp(_permute_fwd, _permute_bwd)


def permute(x: Array, scores: Array, tau: float | Array = 1.0, *, transpose: bool = False) -> Array:
  """Permutes the last axis of ``x`` by the wiring of ``scores``, learnably.

  Forward: the exact integer gather ``x[..., argsort(scores)]``. Backward: the
  straight-through gradient of the reference code, ``x @ (H + S - stop_gradient(S)).T`` with
  ``H`` the hard permutation and ``S = softsort(scores, tau)`` (Eq. 4): ``x`` gets the exact
  gradient of the gather (``g @ H``), ``scores`` that of the relaxation through ``S``.
  Works under ``jit``, ``vmap``, ``grad`` and ``scan``; ``tau`` receives no gradient.

  Args:
    x: [..., n] inputs; any leading batch shape.
    scores: [n] score vector (``jax.vmap`` over a batch of them, e.g. the K modes).
    tau: SoftSort temperature > 0; may be traced (hyperparameter sweeps).
    transpose: multiply by the matrix itself, ``x @ P``: the gather by the inverse order,
      the relaxation entering as ``S`` rather than ``S.T`` (the reference's alignment
      adapters, ``P'^T M P''``).

  Returns:
    [..., n], equal to ``apply_wiring(x, wiring_of(scores))`` (with ``transpose``,
    ``apply_wiring(x, invert(wiring_of(scores)))``).
  """
  _check_scores_match(x, scores)
  _check_tau(tau)
  return _permute(x, scores, jnp.asarray(tau, dtype=jnp.result_type(scores)), bool(transpose))


# --------------------------------------------------------------------------------------
# Wiring helpers on int32 orders. All act on the last axis and broadcast leading axes.


def wiring_of(scores: Array) -> Array:
  """The wiring (int32 order) [..., n] of score vectors [..., n]: a stable argsort."""
  return jnp.argsort(scores, axis=-1, stable=True).astype(jnp.int32)


def invert(wiring: Array) -> Array:
  """The inverse order: ``compose(w, invert(w)) == compose(invert(w), w) == identity``."""
  check_wiring(wiring)
  return jnp.argsort(wiring, axis=-1).astype(jnp.int32)


def scores_of(wiring: Array) -> Array:
  """Evenly spaced scores in [0, 1] whose wiring is ``wiring``: ranks / (n - 1).

  ``wiring_of(scores_of(w)) == w``; for ``w = identity`` this is the paper's initial
  ``linspace(0, 1, n)``. Used to reset the spacing of learned scores at task start.
  """
  n = jnp.shape(wiring)[-1]
  ranks = invert(wiring).astype(jnp.float32)
  return ranks / max(n - 1, 1)


def compose(first: Array, second: Array) -> Array:
  """The single wiring equal to applying ``first`` and then ``second``.

  ``apply_wiring(apply_wiring(x, first), second) == apply_wiring(x, compose(first, second))``;
  as index arrays, ``compose(first, second) == first[second]``.
  """
  check_wiring(first)
  check_wiring(second)
  return apply_wiring(first, second)


def apply_wiring(x: Array, wiring: Array) -> Array:
  """Gathers the last axis of ``x`` [..., n] by ``wiring`` ([n] or broadcastable [..., n]).

  ``apply_wiring(x, w)[..., i] == x[..., w[..., i]]``, i.e. ``P x`` with ``P = I[w, :]``.
  """
  check_wiring(wiring)
  if jnp.shape(x)[-1:] != jnp.shape(wiring)[-1:]:
    raise ValueError(
      f"wiring of length {jnp.shape(wiring)[-1]} cannot gather an axis of "
      f"{jnp.shape(x)[-1]} entries."
    )
  if jnp.ndim(wiring) == 1:
    return jnp.take(x, wiring, axis=-1)
  shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(wiring))
  return jnp.take_along_axis(jnp.broadcast_to(x, shape), jnp.broadcast_to(wiring, shape), axis=-1)


def identity_scores(key: Any, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
  """Initializer: every row is ``linspace(0, 1, n)``, the identity wiring (all modes equal)."""
  del key
  n = shape[-1]
  return jnp.broadcast_to(jnp.linspace(0.0, 1.0, n, dtype=dtype), shape)


def permute_outputs(
  y: Array,
  scores: Array,
  mode: int | Array = 0,
  wiring: Array | None = None,
  tau: float | Array = 1.0,
  noise: Array | None = None,
) -> Array:
  """Permutes layer outputs ``y`` [..., n] by score row ``scores[mode]`` or a cached wiring.

  Args:
    y: [..., n] pre-activations.
    scores: [num_modes, n] score rows.
    mode: which row; a Python int (range-checked) or a traced int32 scalar.
    wiring: [n] int32 order; when given it replaces the scores (a cached task's wiring).
    tau: SoftSort temperature of the backward pass.
    noise: [n] added to the score row (the reference's Gumbel noise while training).
  """
  if wiring is not None:
    return apply_wiring(y, wiring)
  if _is_concrete(mode):
    num_modes = scores.shape[0]
    if not 0 <= int(mode) < num_modes:
      raise ValueError(f"mode must be in [0, {num_modes}), got {int(mode)}.")
  row = scores[mode] if noise is None else scores[mode] + noise
  return permute(y, row, tau)


# --------------------------------------------------------------------------------------
# Flax modules.


class PermutedDense(nn.Module):
  """A linen Dense layer whose output neurons are rewired by learned scores (Eq. 2).

  ``y = permute(x @ kernel + bias, scores[mode])``: the permutation sits after the affine
  map and before the activation. Parameters: ``kernel`` [in, features], ``bias``
  [features], ``scores`` [num_modes, features] initialised to the identity wiring.

  Attributes:
    features: number of output neurons n.
    num_modes: K, the number of score rows (rewiring modes, Sec. 3.3).
    tau: SoftSort temperature of the backward pass (> 0).
    use_bias: whether to add a bias.
    kernel_init: initializer of the kernel.
    bias_init: initializer of the bias.
    param_dtype: dtype of the parameters.
  """

  features: int
  num_modes: int = 1
  tau: float = 1.0
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    _check_num_modes(self.num_modes)
    _check_tau(self.tau)
    super().__post_init__()

  @nn.compact
  def __call__(
    self,
    inputs: Array,
    mode: int | Array = 0,
    wiring: Array | None = None,
    tau: float | Array | None = None,
    noise: Array | None = None,
  ) -> Array:
    """Args: inputs [..., in]; mode (traced int ok); wiring [features] int32 overriding the
    scores; tau overriding ``self.tau`` (e.g. a swept value); noise [features] added to the
    score row. Returns [..., features]."""
    kernel = self.param(
      "kernel", self.kernel_init, (inputs.shape[-1], self.features), self.param_dtype
    )
    y = inputs @ kernel
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    scores = self.param(
      "scores", identity_scores, (self.num_modes, self.features), self.param_dtype
    )
    return permute_outputs(y, scores, mode, wiring, self.tau if tau is None else tau, noise)


class PermutedLinear(nnx.Module):
  """The NNX twin of ``PermutedDense`` (named like ``nnx.Linear``), same pure functions.

  Parameters ``kernel`` [in_features, out_features], ``bias`` [out_features] and
  ``scores`` [num_modes, out_features] (identity wiring at init).
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    *,
    num_modes: int = 1,
    tau: float = 1.0,
    use_bias: bool = True,
    kernel_init: Initializer = nnx.initializers.lecun_normal(),
    bias_init: Initializer = nnx.initializers.zeros_init(),
    param_dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
  ):
    _check_num_modes(num_modes)
    _check_tau(tau)
    self.tau = tau
    self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), param_dtype))
    self.bias = (
      nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype)) if use_bias else None
    )
    self.scores = nnx.Param(identity_scores(None, (num_modes, out_features), param_dtype))

  def __call__(
    self,
    inputs: Array,
    mode: int | Array = 0,
    wiring: Array | None = None,
    tau: float | Array | None = None,
  ) -> Array:
    """Same call as ``PermutedDense.__call__``."""
    y = inputs @ self.kernel[...]
    if self.bias is not None:
      y = y + self.bias[...]
    return permute_outputs(y, self.scores[...], mode, wiring, self.tau if tau is None else tau)
