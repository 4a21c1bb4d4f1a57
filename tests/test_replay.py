"""The replay that stores each observation once, against a slow buffer that stores whole
transitions: FIFO overwrite on a wrapping ring, episodes that terminate and truncate, uniform
sampling of filled rows, per-task clear, and SAC's losses equal on the same rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewirejax import replay
from rewirejax.types import Transition

OBS, ACT = 3, 2


class WholeTransitions:
  """The obvious buffer: every field of every transition in a NumPy ring."""

  def __init__(self, capacity: int):
    self.capacity, self.rows, self.position, self.size = capacity, {}, 0, 0

  def insert(self, batch: Transition) -> None:
    for j in range(batch.reward.shape[0]):
      self.rows[self.position] = jax.tree.map(lambda x, j=j: np.asarray(x[j]), batch)
      self.position = (self.position + 1) % self.capacity
      self.size = min(self.size + 1, self.capacity)


def random_steps(num_envs: int, episode_length: int, num_steps: int, seed: int):
  """``num_steps`` inserts of ``num_envs`` envs whose episodes terminate at random (p = 0.15
  a step) or truncate at ``episode_length`` steps; observations are distinct random vectors,
  and an env's next observation after an ending is a fresh first one."""
  rng = np.random.default_rng(seed)
  obs = rng.normal(size=(num_envs, OBS)).astype(np.float32)
  steps = np.zeros(num_envs, int)
  for _ in range(num_steps):
    steps += 1
    final = rng.normal(size=(num_envs, OBS)).astype(np.float32)
    terminal = (rng.random(num_envs) < 0.15).astype(np.float32)
    truncated = ((steps >= episode_length) & (terminal == 0)).astype(np.float32)
    batch = Transition(
      obs=jnp.asarray(obs),
      action=jnp.asarray(rng.uniform(-1, 1, (num_envs, ACT)), jnp.float32),
      reward=jnp.asarray(rng.normal(size=num_envs), jnp.float32),
      next_obs=jnp.asarray(final),
      terminal=jnp.asarray(terminal),
      truncated=jnp.asarray(truncated),
    )
    yield batch
    ended = (terminal + truncated) > 0
    first = rng.normal(size=(num_envs, OBS)).astype(np.float32)
    obs = np.where(ended[:, None], first, final)
    steps = np.where(ended, 0, steps)


def _example() -> Transition:
  zero = jnp.float32(0.0)
  return Transition(jnp.zeros(OBS), jnp.zeros(ACT), zero, jnp.zeros(OBS), zero, zero)


@pytest.mark.parametrize(
  "capacity, num_envs, episode_length", [(37, 4, 5), (40, 4, 3), (12, 3, 1), (64, 1, 7)]
)
def test_the_same_rows_give_the_same_transitions_as_storing_them_whole(
  capacity, num_envs, episode_length
):
  """On a ring that wraps (37 rows: not a multiple of 4 envs), every filled row gives the
  reference's transition after every insert; a terminal row's next observation, which SAC
  never reads, is the next episode's first (or the true one while it is the newest)."""
  state = replay.init(capacity, _example(), num_envs, episode_length)
  reference = WholeTransitions(capacity)
  insert, gather = jax.jit(replay.insert), jax.jit(replay.gather)
  checked_terminal = checked_truncated = 0
  for batch in random_steps(num_envs, episode_length, 3 * capacity // num_envs + 5, seed=1):
    state = insert(state, batch)
    reference.insert(batch)
    assert int(state.size) == reference.size and int(state.position) == reference.position
    rows = np.arange(reference.size)
    got = jax.tree.map(np.asarray, gather(state, jnp.asarray(rows)))
    for r in rows:
      want = reference.rows[r]
      for field in ("obs", "action", "reward", "terminal", "truncated"):
        np.testing.assert_array_equal(getattr(got, field)[r], getattr(want, field), err_msg=field)
      newest = (r - reference.position) % capacity >= capacity - num_envs
      if want.terminal and not newest:
        np.testing.assert_array_equal(
          got.next_obs[r], reference.rows[(r + num_envs) % capacity].obs
        )
        checked_terminal += 1
      else:
        np.testing.assert_array_equal(got.next_obs[r], want.next_obs)
        checked_truncated += int(want.truncated)
  assert checked_terminal > 0 and checked_truncated > 0


def test_sac_losses_of_the_stored_rows_equal_those_of_the_whole_transitions():
  from rewirejax.config import SACConfig
  from rewirejax.networks import init_agent_params, make_sac_networks
  from rewirejax.sac import losses_of

  capacity, num_envs = 50, 5
  state = replay.init(capacity, _example(), num_envs, 4)
  reference = WholeTransitions(capacity)
  for batch in random_steps(num_envs, 4, 23, seed=2):
    state = replay.insert(state, batch)
    reference.insert(batch)
  rows = jnp.arange(capacity)
  whole = jax.tree.map(lambda *x: jnp.stack(x), *[reference.rows[r] for r in range(capacity)])
  stored = replay.gather(state, rows)
  assert not np.array_equal(stored.next_obs, whole.next_obs)  # The terminal rows differ...
  cfg = SACConfig(hidden_sizes=(8, 8))
  networks = make_sac_networks(OBS, ACT, 1, cfg.hidden_sizes, permuted=False)
  params = init_agent_params(networks, jax.random.key(0), OBS, ACT, 1.0)
  losses = losses_of(networks, cfg, ACT)(networks.policy)
  key, task = jax.random.key(1), jnp.int32(0)
  of_whole, _ = losses.critic(params.critic, params, None, whole, task, key)
  of_stored, _ = losses.critic(params.critic, params, None, stored, task, key)
  np.testing.assert_array_equal(of_stored, of_whole)  # ...but not the losses, bit for bit.


def test_sample_reads_only_filled_rows_and_clear_empties():
  state = replay.init(100, _example(), 4, 10)
  batch = next(random_steps(4, 10, 1, seed=3))
  state = replay.insert(state, batch._replace(reward=jnp.arange(10.0, 14.0)))
  sampled = replay.sample(state, jax.random.key(0), 1000)
  assert set(np.unique(sampled.reward)) == {10.0, 11.0, 12.0, 13.0}
  by_reward = {float(r): i for i, r in enumerate(np.arange(10.0, 14.0))}
  index = np.array([by_reward[float(r)] for r in sampled.reward])
  np.testing.assert_array_equal(sampled.obs, np.asarray(batch.obs)[index])  # Rows aligned.
  cleared = replay.clear(state)
  assert int(cleared.size) == 0 and int(cleared.position) == 0


def test_vmaps_over_seeds_and_rejects_bad_sizes():
  states = jax.vmap(lambda _: replay.init(8, _example(), 2, 5))(jnp.arange(3))
  batch = next(random_steps(2, 5, 1, seed=4))
  states = jax.vmap(replay.insert, in_axes=(0, None))(states, batch)
  assert states.reward.shape == (3, 8)
  with pytest.raises(ValueError, match="cannot insert 3 transitions into a buffer of 2"):
    replay.init(2, _example(), 3, 5)
  with pytest.raises(ValueError, match="takes inserts of 2 transitions, got 3"):
    replay.insert(replay.init(8, _example(), 2, 5), next(random_steps(3, 5, 1, seed=5)))
  with pytest.raises(ValueError, match="episode_length must be >= 1, got 0"):
    replay.init(8, _example(), 2, 0)


def test_the_final_observations_ring_is_small_at_the_paper_settings():
  assert replay.num_final_slots(1_000_000, 128, 1000) == 128 * 9
  assert replay.num_final_slots(12, 3, 1) == 12  # Never more than the rows.
