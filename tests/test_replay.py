"""The ring-buffer replay: FIFO overwrite, uniform sampling of filled rows, per-task clear."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewirejax import replay
from rewirejax.types import Transition


def batch(start, n):
  values = jnp.arange(start, start + n, dtype=jnp.float32)
  return Transition(
    values[:, None], values[:, None], values, values[:, None], 0 * values, 0 * values
  )


def test_insert_wraps_around_fifo():
  state = replay.init(5, jax.tree.map(lambda x: x[0], batch(0, 1)))
  state = replay.insert(state, batch(0, 3))
  state = replay.insert(state, batch(3, 3))  # Row 0 is overwritten by the 6th transition.
  np.testing.assert_array_equal(state.data.reward, [5, 1, 2, 3, 4])
  assert int(state.size) == 5 and int(state.position) == 1


def test_sample_reads_only_filled_rows_and_clear_empties():
  state = replay.init(100, jax.tree.map(lambda x: x[0], batch(0, 1)))
  state = replay.insert(state, batch(10, 4))
  sampled = replay.sample(state, jax.random.key(0), 1000)
  assert set(np.unique(sampled.reward)) == {10.0, 11.0, 12.0, 13.0}
  np.testing.assert_array_equal(sampled.obs[:, 0], sampled.reward)  # Rows stay aligned.
  cleared = replay.clear(state)
  assert int(cleared.size) == 0 and int(cleared.position) == 0


def test_vmaps_over_seeds_and_rejects_oversized_batch():
  example = jax.tree.map(lambda x: x[0], batch(0, 1))
  states = jax.vmap(lambda _: replay.init(4, example))(jnp.arange(3))
  states = jax.vmap(replay.insert, in_axes=(0, None))(states, batch(0, 2))
  assert states.data.reward.shape == (3, 4)
  with pytest.raises(ValueError, match="cannot insert"):
    replay.insert(replay.init(2, example), batch(0, 3))
