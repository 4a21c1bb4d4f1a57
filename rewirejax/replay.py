"""A pure ring-buffer replay on device that stores each observation once (init / insert /
sample / clear, vmappable over seeds).

Every insert is one step of the same ``batch`` envs in the same order, so an env's
consecutive transitions are ``batch`` rows apart, and a transition's next observation is the
observation stored one insert later, at row ``(row + batch) % capacity``. Except:

* the newest insert's next observations are not stored yet: they are kept as given
  (``newest_next_obs``);
* where the time limit ended the episode (a truncation, bootstrapped), the next row holds the
  next episode's first observation, so the episode's last one is kept on its own, in the ring
  ``final_obs``;
* where the episode terminated, the next episode's first observation is returned as the next
  one. SAC's target multiplies its value by ``1 - terminal = 0``, so the losses are exactly
  those of the true last observation (``tests/test_replay.py``).

An env truncates at most once in ``episode_length`` steps, which bounds the truncated rows
alive in the buffer, and so the size of ``final_obs``. At 1 M transitions, 128 envs and
1000-step episodes that is 1,152 rows: the buffer takes about half the memory of one that
stores both observations (``make bench``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rewirejax.types import Array, PRNGKey, Transition

TERMINATED = -1  # ``ending`` of a terminal transition; 0: the episode went on.


class ReplayState(NamedTuple):
  """The buffer's storage and where it stands.

  Attributes:
    obs: [capacity, obs_dim] each transition's observation.
    action: [capacity, act_dim].
    reward: [capacity].
    ending: int32 [capacity]: 0 the episode went on, ``TERMINATED`` it terminated, k + 1 the
      time limit ended it and its last observation is ``final_obs[k]``.
    final_obs: [num_final, obs_dim] a ring of the truncated transitions' last observations.
    newest_next_obs: [batch, obs_dim] the next observations of the newest insert.
    position: int32, the next row to write.
    size: int32, the rows filled (<= capacity).
    final_position: int32, the next slot of ``final_obs`` to write.
  """

  obs: Array
  action: Array
  reward: Array
  ending: Array
  final_obs: Array
  newest_next_obs: Array
  position: Array
  size: Array
  final_position: Array


def num_final_slots(capacity: int, batch: int, episode_length: int) -> int:
  """Slots of ``final_obs`` that outlive every row that points to one: an env's rows span
  ``ceil(capacity / batch)`` inserts, with at most ``ceil(that / episode_length)``
  truncations among them (one more for the slack of a partial span); never more than the
  buffer's rows."""
  inserts = math.ceil(capacity / batch)
  return min(batch * (math.ceil(inserts / episode_length) + 1), capacity)


def init(capacity: int, example: Transition, batch: int, episode_length: int) -> ReplayState:
  """An empty buffer shaped after one unbatched ``example`` transition, for inserts of
  ``batch`` transitions (one per env) from episodes of at most ``episode_length`` steps."""
  for name, value in {
    "capacity": capacity,
    "batch": batch,
    "episode_length": episode_length,
  }.items():
    if value < 1:
      raise ValueError(f"the replay's {name} must be >= 1, got {value}.")
  if batch > capacity:
    raise ValueError(f"cannot insert {batch} transitions into a buffer of {capacity}.")

  def rows(n, x):
    return jnp.zeros((n, *jnp.shape(x)), jnp.result_type(x))

  num_final = num_final_slots(capacity, batch, episode_length)
  zero = jnp.int32(0)
  return ReplayState(
    obs=rows(capacity, example.obs),
    action=rows(capacity, example.action),
    reward=rows(capacity, example.reward),
    ending=jnp.zeros(capacity, jnp.int32),
    final_obs=rows(num_final, example.obs),
    newest_next_obs=rows(batch, example.obs),
    position=zero,
    size=zero,
    final_position=zero,
  )


def capacity_of(state: ReplayState) -> int:
  return state.obs.shape[0]


def clear(state: ReplayState) -> ReplayState:
  """Empties the buffer for a new task (keeps the storage; old rows become unreachable)."""
  return state._replace(position=jnp.zeros_like(state.position), size=jnp.zeros_like(state.size))


def insert(state: ReplayState, batch: Transition) -> ReplayState:
  """Writes one step of every env (fields [batch, ...]) at the ring position, FIFO."""
  capacity, n = capacity_of(state), state.newest_next_obs.shape[0]
  if batch.reward.shape[0] != n:
    raise ValueError(f"this buffer takes inserts of {n} transitions, got {batch.reward.shape[0]}.")
  rows = (state.position + jnp.arange(n)) % capacity
  truncated = batch.truncated > 0
  num_final = state.final_obs.shape[0]
  slots = (state.final_position + jnp.cumsum(truncated) - 1) % num_final
  final_obs = state.final_obs.at[jnp.where(truncated, slots, num_final)].set(
    batch.next_obs, mode="drop"
  )
  ending = jnp.where(truncated, slots + 1, jnp.where(batch.terminal > 0, TERMINATED, 0))

  def write(buffer, values):
    return buffer.at[rows].set(values, unique_indices=True)

  return ReplayState(
    obs=write(state.obs, batch.obs),
    action=write(state.action, batch.action),
    reward=write(state.reward, batch.reward),
    ending=write(state.ending, ending.astype(jnp.int32)),
    final_obs=final_obs,
    newest_next_obs=batch.next_obs,
    position=(state.position + n) % capacity,
    size=jnp.minimum(state.size + n, capacity),
    final_position=(state.final_position + jnp.sum(truncated)) % num_final,
  )


def gather(state: ReplayState, rows: Array) -> Transition:
  """The transitions at ``rows`` [b] (filled rows), next observations restored."""
  capacity, n = capacity_of(state), state.newest_next_obs.shape[0]
  in_newest = (rows - state.position + n) % capacity  # In [0, n) for the newest insert's rows.
  newest = in_newest < n
  next_obs = jnp.where(
    newest[:, None],
    state.newest_next_obs[jnp.minimum(in_newest, n - 1)],
    state.obs[(rows + n) % capacity],
  )
  ending = state.ending[rows]
  final = state.final_obs[jnp.maximum(ending - 1, 0)]
  next_obs = jnp.where((ending > 0)[:, None], final, next_obs)
  return Transition(
    obs=state.obs[rows],
    action=state.action[rows],
    reward=state.reward[rows],
    next_obs=next_obs,
    terminal=(ending == TERMINATED).astype(state.reward.dtype),
    truncated=(ending > 0).astype(state.reward.dtype),
  )


def sample(state: ReplayState, key: PRNGKey, batch_size: int) -> Transition:
  """Uniform sample (with replacement) of ``batch_size`` stored transitions."""
  rows = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
  return gather(state, rows)


def nbytes(state: ReplayState) -> int:
  """Bytes of the storage (per seed when unbatched); also takes ``jax.eval_shape`` output."""
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
