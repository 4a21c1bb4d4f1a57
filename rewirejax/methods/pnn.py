"""Progressive neural networks (Rusu et al. 2016; implementation notes §7): a column per task.

``num_columns`` columns of ``len(hidden_sizes)`` hidden layers (width 96 in the paper) are
preallocated, and task ``t`` acts with column ``t % num_columns`` (a traced index: every task
shares one compile). Column ``k >= 1`` sees the previous layer of every earlier column through a
lateral adapter at each layer after the first, the output layer included (the reference's):

    h_k^l = LeakyReLU(W_k^l h_k^{l-1} + b_k^l + U_k^l a_k^l + c_k^l),
    a_k^l = LeakyReLU(V_k^l alpha_k^l [h_0^{l-1}; ...; h_{k-1}^{l-1}])

with ``alpha_k^l`` a learned scalar (initialised ``U(0, 1) / k``), V without bias (stored by
blocks, one ``V_kj`` per pair ``j < k``: ``V [h_0; ...] = sum_j V_kj h_j``) and U with bias ``c``.
The SAC update's forward computes columns 0..t % num_columns only (``skip_later_columns``);
acting and evaluation compute every column. While task ``t`` trains, ``mask_grads`` zeroes the
gradients of every other column and of the adapters into it, so earlier columns stay
bit-identical. Model size: the parameters of the columns used.
"""

from __future__ import annotations

import dataclasses
import functools

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

  ``skip_later_columns``: compute only columns 0..c of column c = ``task_id % num_columns`` (a
  column never reads a later one), one ``lax.switch`` branch per c, so the first column costs
  one column's forward and the last all C. Only for an unbatched task id: under a ``vmap`` over
  task ids (evaluation) a switch runs every branch. The SAC update uses it; acting keeps the
  default, every column at once, since its 16-observation forward is a small share of the
  work (the same parameters serve both: ``make_pnn`` clones the actor with the flag on for the
  training forward). The update's program traces C (C + 1) / 2 column forwards, so its
  compile grows as C^2.
  """

  action_size: int
  num_columns: int
  hidden_sizes: tuple[int, ...] = (PNN_WIDTH,) * 3
  skip_later_columns: bool = False

  @nn.compact
  def __call__(self, obs: Array, task_id: Array) -> tuple[Array, Array]:
    """Args: obs [..., n_0]; task_id int32 scalar (traced ok).
    Returns mu, log_std [..., action_size]."""
    layers = self._layer_params(obs.shape[-1])
    column = jnp.asarray(task_id) % self.num_columns
    if self.skip_later_columns:
      branches = [
        functools.partial(_last_column, num_columns=k + 1) for k in range(self.num_columns)
      ]
      out = jax.lax.switch(column, branches, layers, obs)
    else:
      out = jnp.stack(_column_outputs(layers, obs, self.num_columns))[column]
    mu, log_std = jnp.split(out, 2, axis=-1)
    return mu, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

  def _layer_params(self, observation_size: int) -> list[dict[str, Array]]:
    """Every layer's parameters (see the class docstring), by their names without ``_l``."""
    pair_k, _ = column_pairs(self.num_columns)
    columns, n_in, layers = self.num_columns, observation_size, []
    for l, width in enumerate((*self.hidden_sizes, 2 * self.action_size)):
      layer = {
        "kernel": self.param(f"kernel_{l}", stacked_torch_linear_init, (columns, n_in, width)),
        "bias": self.param(f"bias_{l}", torch_bias_init(n_in), (columns, width)),
      }
      if l > 0 and columns > 1:
        layer["lateral_alpha"] = self.param(
          f"lateral_alpha_{l}", _lateral_alpha_init, (columns - 1,)
        )
        layer["lateral_v"] = self.param(
          f"lateral_v_{l}", _lateral_v_init(pair_k), (len(pair_k), n_in, n_in)
        )
        layer["lateral_u"] = self.param(
          f"lateral_u_{l}", stacked_torch_linear_init, (columns - 1, n_in, width)
        )
        layer["lateral_u_bias"] = self.param(
          f"lateral_u_bias_{l}", torch_bias_init(n_in), (columns - 1, width)
        )
      layers.append(layer)
      n_in = width
    return layers


def _column_outputs(layers: list[dict[str, Array]], obs: Array, num_columns: int) -> list[Array]:
  """The outputs [..., 2 action_size] of columns 0..num_columns-1 for obs [..., n_0], column
  by column in 2-D matmuls: ``h_k^l`` of the module docstring."""
  h = [obs] * num_columns
  for l, layer in enumerate(layers):
    out = [h[k] @ layer["kernel"][k] + layer["bias"][k] for k in range(num_columns)]
    if l > 0:
      out = [out[0]] + [out[k] + _lateral(layer, h[:k]) for k in range(1, num_columns)]
    h = [nn.leaky_relu(o, LEAKY_SLOPE) for o in out] if l < len(layers) - 1 else out
  return h


def _last_column(layers: list[dict[str, Array]], obs: Array, num_columns: int) -> Array:
  """The output of column ``num_columns - 1``, computing no later column."""
  return _column_outputs(layers, obs, num_columns)[-1]


def _lateral(layer: dict[str, Array], earlier: list[Array]) -> Array:
  """``U_k LeakyReLU(V_k alpha_k [h_0; ...; h_{k-1}]) + c_k`` into column k = len(earlier):
  the reference's one ``Linear(k n, n)``, its blocks ``V_kj`` the pairs (k, 0..k-1), which
  ``column_pairs`` lists from ``k (k - 1) / 2`` on."""
  k, n = len(earlier), earlier[0].shape[-1]
  v = layer["lateral_v"][k * (k - 1) // 2 : k * (k + 1) // 2].reshape(k * n, n)
  scaled = layer["lateral_alpha"][k - 1] * jnp.concatenate(earlier, axis=-1)
  adapted = nn.leaky_relu(scaled @ v, LEAKY_SLOPE)
  return adapted @ layer["lateral_u"][k - 1] + layer["lateral_u_bias"][k - 1]


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
    # The SAC update's task id is one unbatched value for every seed: the switch runs one branch.
    training_actor = actor.clone(skip_later_columns=True)
    return networks_lib.SACNetworks(actor, critic, networks_lib.plain_policy(training_actor))

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
