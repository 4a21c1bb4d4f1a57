"""Progressive neural networks (Rusu et al. 2016; implementation notes §7): a column per task.

``num_columns`` columns of ``len(hidden_sizes)`` hidden layers (width 96 in the paper) are
preallocated, and task ``t`` acts with column ``t % num_columns`` (a traced index: every task
shares one compile). Column ``k >= 1`` sees the previous layer of every earlier column through a
lateral adapter at each layer after the first, the output layer included (the reference's):

    h_k^l = LeakyReLU(W_k^l h_k^{l-1} + b_k^l + U_k^l a_k^l + c_k^l),
    a_k^l = LeakyReLU(V_k^l alpha_k^l [h_0^{l-1}; ...; h_{k-1}^{l-1}])

with ``alpha_k^l`` a learned scalar (initialised ``U(0, 1) / k``), V without bias (stored by
blocks, one ``V_kj`` per pair ``j < k``: ``V [h_0; ...] = sum_j V_kj h_j``) and U with bias ``c``.
All columns are computed in one batched forward (pair blocks stacked over the
``num_columns (num_columns - 1) / 2`` pairs). While task ``t`` trains, ``mask_grads`` zeroes the
gradients of every other column and of the adapters into it, so earlier columns stay
bit-identical. Model size: the parameters of the columns used.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from rewirejax import networks as networks_lib
from rewirejax.methods import base
from rewirejax.networks import (
  LEAKY_SLOPE,
  LOG_STD_MAX,
  LOG_STD_MIN,
  stacked_torch_linear_init,
  torch_bias_init,
)
from rewirejax.types import Array

PNN_WIDTH = 96  # The reference's column width.


def column_pairs(num_columns: int) -> tuple[np.ndarray, np.ndarray]:
  """The lateral pairs (k, j), j < k, as two int arrays [num_columns (num_columns - 1) / 2]."""
  k, j = np.tril_indices(num_columns, -1)
  return k.astype(np.int32), j.astype(np.int32)


class ProgressiveActor(nn.Module):
  """``(obs, task_id) -> (mu, log_std)`` of column ``task_id % num_columns``.


  Parameters (C columns, P = C (C - 1) / 2 pairs, layer l, the output layer last):
    ``kernel_l`` [C, n_{l-1}, n_l], ``bias_l`` [C, n_l]; for l >= 1 the laterals into columns
    1..C-1: ``lateral_alpha_l`` [C-1], ``lateral_v_l`` [P, n_{l-1}, n_{l-1}], ``lateral_u_l``
    [C-1, n_{l-1}, n_l], ``lateral_u_bias_l`` [C-1, n_l].
  """

  action_size: int
  num_columns: int
  hidden_sizes: tuple[int, ...] = (PNN_WIDTH,) * 3

  @nn.compact
  def __call__(self, obs: Array, task_id: Array) -> tuple[Array, Array]:
    pair_k, pair_j = column_pairs(self.num_columns)
    laterals = len(pair_k) > 0
    sizes = (*self.hidden_sizes, 2 * self.action_size)
    h = jnp.broadcast_to(obs, (self.num_columns, *obs.shape))  # [C, ..., n_0]
    for l, width in enumerate(sizes):
      n_in, columns = h.shape[-1], self.num_columns
      kernel = self.param(f"kernel_{l}", stacked_torch_linear_init, (columns, n_in, width))
      bias = self.param(f"bias_{l}", torch_bias_init(n_in), (columns, width))
      out = jnp.einsum("c...i,cio->c...o", h, kernel) + _expand(bias, h.ndim)
      if l > 0 and laterals:
        alpha = self.param(f"lateral_alpha_{l}", _lateral_alpha_init, (columns - 1,))
        v = self.param(f"lateral_v_{l}", _lateral_v_init(pair_k), (len(pair_k), n_in, n_in))
        u = self.param(f"lateral_u_{l}", stacked_torch_linear_init, (columns - 1, n_in, width))
        u_bias = self.param(f"lateral_u_bias_{l}", torch_bias_init(n_in), (columns - 1, width))
        pair_to_column = jax.nn.one_hot(pair_k - 1, columns - 1, axis=0)  # [C-1, P]
        scaled = h[pair_j] * _expand(alpha[pair_k - 1], h.ndim)  # [P, ..., n_in]
        projected = jnp.einsum("p...i,pir->p...r", scaled, v)
        into_column = nn.leaky_relu(
          jnp.einsum("cp,p...r->c...r", pair_to_column, projected), LEAKY_SLOPE
        )
        lateral = jnp.einsum("c...r,cro->c...o", into_column, u) + _expand(u_bias, h.ndim)
        out = out.at[1:].add(lateral)
      h = nn.leaky_relu(out, LEAKY_SLOPE) if l < len(sizes) - 1 else out
    mu, log_std = jnp.split(h[jnp.asarray(task_id) % self.num_columns], 2, axis=-1)
    return mu, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def _expand(per_column: Array, ndim: int) -> Array:
  """[C, *tail] -> [C, 1, ..., 1, *tail] against activations [C, ..., n] of ``ndim`` axes."""
  tail = per_column.shape[1:]
  return per_column.reshape(per_column.shape[0], *[1] * (ndim - 1 - len(tail)), *tail)


def _lateral_alpha_init(key, shape, dtype=jnp.float32) -> Array:
  """The reference's ``rand(1) / k`` for the lateral scale into column k = 1..C-1."""
  return jax.random.uniform(key, shape, dtype) / jnp.arange(1, shape[0] + 1, dtype=dtype)


def _lateral_v_init(pair_k: np.ndarray):
  """PyTorch's ``Linear(k n, n)`` init of the reference's V into column k, by blocks: every
  block ``V_kj`` is ``U(-b, b)`` with ``b = 1 / sqrt(k n)`` (the fan-in of all k inputs)."""

  def init(key, shape, dtype=jnp.float32) -> Array:
    bound = 1.0 / np.sqrt(shape[-2] * pair_k.astype(np.float64))
    unit = jax.random.uniform(key, shape, dtype, -1.0, 1.0)
    return unit * jnp.asarray(bound, dtype).reshape(-1, 1, 1)

  return init


def leaf_columns(name: str, num_columns: int) -> np.ndarray:
  """The column each slice of parameter ``name`` belongs to (along its leading axis)."""
  if name.startswith("lateral_v"):
    return column_pairs(num_columns)[0]
  if name.startswith("lateral_"):
    return np.arange(1, num_columns)
  return np.arange(num_columns)


@dataclasses.dataclass(frozen=True)
class PNNConfig:
  """PNN's options."""

  width: int = PNN_WIDTH  # Units per hidden layer of each column.

  def validate(self) -> None:
    if self.width < 1:
      raise ValueError(f"width must be >= 1, got {self.width}.")


def make_pnn(cfg, options: PNNConfig) -> base.Method:
  """PNN with ``cfg.max_tasks`` preallocated columns of ``width`` units per hidden layer."""
  max_tasks, width = cfg.max_tasks, options.width

  def make_networks(observation_size, action_size, cfg):
    del observation_size
    depth = len(cfg.sac.hidden_sizes)
    actor = ProgressiveActor(action_size, max_tasks, (width,) * depth)
    critic = networks_lib.TwinCritic(cfg.sac.hidden_sizes)
    return networks_lib.SACNetworks(actor, critic, networks_lib.plain_policy(actor))

  def mask_grads(grads, state, task_id):
    del state
    column = jnp.asarray(task_id) % max_tasks

    def mask(name, g):
      trainable = jnp.asarray(leaf_columns(name, max_tasks)) == column
      return g * trainable.reshape(-1, *[1] * (g.ndim - 1)).astype(g.dtype)

    return {**grads, "params": {name: mask(name, g) for name, g in grads["params"].items()}}

  def end_task(params, state, ctx):
    """The model size: the columns used so far, with their lateral connections."""
    used = jnp.minimum(jnp.maximum(ctx.num_tasks, 1), max_tasks)
    size = 0
    for name, leaf in params.actor["params"].items():
      columns = jnp.asarray(leaf_columns(name, max_tasks))
      per_slice = int(np.prod(leaf.shape[1:], dtype=np.int64))
      size += per_slice * jnp.sum(columns < used)
    return params, state, {base.POLICY_PARAMS: size}

  return base.fine_tuning(
    "pnn",
    make_networks=make_networks,
    actor_optimizer=base.masked(mask_grads),
    end_task=end_task,
  )
