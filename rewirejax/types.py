"""Type aliases, the transition record and the environment protocol shared by all modules."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax

from rewirejax import _quiet_imports  # noqa: F401  (before brax: see there)

# isort: split
from brax.envs.base import State as EnvState

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # A pytree of arrays (Flax params).
Metrics = dict[str, jax.Array]
TaskId = jax.Array  # int32 scalar, traced: every task shares one compiled step.

__all__ = ["Array", "EnvState", "Metrics", "PRNGKey", "Params", "TaskEnv", "TaskId", "Transition"]


class Transition(NamedTuple):
  """One environment step, as stored in the replay buffer (leading axes: [..., ])."""

  obs: Array  # [..., obs_dim]
  action: Array  # [..., act_dim] in [-1, 1]
  reward: Array  # [...]
  next_obs: Array  # [..., obs_dim], the true next observation (before any auto-reset)
  terminal: Array  # [...] 1.0 where the episode terminated (not bootstrapped)
  truncated: Array  # [...] 1.0 where the time limit ended the episode (bootstrapped)


class TaskEnv(Protocol):
  """A single (unbatched) environment whose physics are chosen by a traced task id.

  ``reset``/``step`` act on one environment; batch them with ``jax.vmap(..., in_axes=(0, 0,
  None))``. ``step`` auto-resets: when an episode ends, the returned ``state.obs`` is the
  first observation of a fresh episode, and:

  * ``state.done`` is 1.0 (terminated or truncated at this step);
  * ``state.info["truncation"]`` is 1.0 when the time limit ended it without termination;
  * ``state.info["final_obs"]`` is the true next observation of the step just taken (equal
    to ``state.obs`` when the episode did not end);
  * ``state.reward`` is the reward of the step just taken.

  Two optional members:

  * ``synchronous_episodes = True``: every episode lasts exactly ``episode_length`` steps and
    ``step`` never resets (``done`` is 1.0 at the last step). The trainer then resets all envs
    at once, on a clock outside ``vmap``, so a costly reset (Meta-World's) runs once an episode
    instead of in every step; a chunk must then be a whole number of episodes.
  * ``episode_score(episode_return, final_state) -> Array``: what evaluation reports per
    episode instead of the return (Continual World: the success flag at the last step).
  """

  observation_size: int
  action_size: int
  num_tasks: int
  episode_length: int

  def reset(self, key: PRNGKey, task_id: TaskId) -> EnvState: ...

  def step(self, state: EnvState, action: Array, task_id: TaskId) -> EnvState: ...
