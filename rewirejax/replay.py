"""A pure ring-buffer replay on device: init / insert / sample, vmappable over seeds."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rewirejax.types import PRNGKey, Transition


class ReplayState(NamedTuple):
  data: Transition  # Each field [capacity, ...].
  position: jax.Array  # int32: next row to write.
  size: jax.Array  # int32: rows filled, <= capacity.


def init(capacity: int, example: Transition) -> ReplayState:
  """An empty buffer shaped after one unbatched ``example`` transition."""
  data = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.result_type(x)), example)
  return ReplayState(data, jnp.int32(0), jnp.int32(0))


def capacity_of(state: ReplayState) -> int:
  return jax.tree.leaves(state.data)[0].shape[0]


def clear(state: ReplayState) -> ReplayState:
  """Empties the buffer for a new task (keeps the storage; old rows become unreachable)."""
  return state._replace(position=jnp.zeros_like(state.position), size=jnp.zeros_like(state.size))


def insert(state: ReplayState, batch: Transition) -> ReplayState:
  """Writes ``batch`` (fields [n, ...], n <= capacity) at the ring position, FIFO."""
  capacity = capacity_of(state)
  n = jax.tree.leaves(batch)[0].shape[0]
  if n > capacity:
    raise ValueError(f"cannot insert {n} transitions into a buffer of {capacity}.")
  rows = (state.position + jnp.arange(n)) % capacity
  data = jax.tree.map(lambda buf, x: buf.at[rows].set(x, unique_indices=True), state.data, batch)
  return ReplayState(data, (state.position + n) % capacity, jnp.minimum(state.size + n, capacity))


def sample(state: ReplayState, key: PRNGKey, batch_size: int) -> Transition:
  """Uniform sample (with replacement) of ``batch_size`` stored transitions."""
  rows = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
  return jax.tree.map(lambda buf: buf[rows], state.data)


def nbytes(state: ReplayState) -> int:
  """Bytes of the storage (per seed when unbatched); also takes ``jax.eval_shape`` output."""
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state.data))
