"""Continual World (Wolczyk et al., 2021) on MJX: one ``TaskEnv`` per Meta-World task.

The tasks come from ``mtcworldmjx`` (the ``[cw]`` extra), an MJX port of Meta-World v3 whose
``reset``/``step`` are pure JAX on MuJoCo Warp. The paper used Meta-World v1 on MuJoCo 2.0,
so success rates are not comparable with its Table 2 in absolute terms.

Each task is a different MJCF model, so one traced task id cannot select among them: a
scenario's environment is a tuple with one ``MetaWorldTaskEnv`` per task id (a repeated task
shares its object), and the driver compiles one program per distinct env
(``rewirejax.train``). The task id still selects the policy's head.

What the Continual World reference does, and what is kept (implementation notes §8):

* ``random_init_all``: every episode, the object and goal positions are drawn afresh (a real
  reset, not a replay of the first initial state);
* 200-step episodes, truncated, never terminated; the observation is the 39-d Meta-World one
  (no task one-hot: the task heads know the task);
* the success flag at the episode's last step is the evaluation score (``episode_score``).

Every episode lasts exactly ``episode_length`` steps, so the env declares
``synchronous_episodes``: its ``step`` never resets, and the trainer resets every env at once
on an unbatched clock. A Meta-World reset settles the hand for 50 physics steps (about 40
env steps' worth), which inside a ``vmap`` would otherwise run at every step.

Solver: MuJoCo Warp with the port's 6 solver and line-search iterations
(``SOLVER_ITERATIONS``, the port's default; Meta-World's models use 50), because a step's
cost grows with them. Each env's field records it in the run's manifest.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import tempfile
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from brax.envs.base import State

from rewirejax.extras import MissingExtraError
from rewirejax.types import Array, EnvState, PRNGKey, TaskId

__all__ = [
  "CW3_TRIPLETS",
  "CW10",
  "EPISODE_LENGTH",
  "INSTALL_HINT",
  "MetaWorldTaskEnv",
  "MissingExtraError",
  "make_cw_envs",
]

# The task orders of implementation notes §8 (the reference's ``-v1`` names, here ``-v3``).
CW10 = (
  "hammer",
  "push-wall",
  "faucet-close",
  "push-back",
  "stick-pull",
  "handle-press-side",
  "push",
  "shelf-place",
  "window-close",
  "peg-unplug-side",
)
CW3_TRIPLETS = {
  1: ("push", "window-close", "hammer"),
  2: ("hammer", "window-close", "faucet-close"),
  3: ("window-close", "handle-press-side", "peg-unplug-side"),
  4: ("faucet-close", "shelf-place", "peg-unplug-side"),
  5: ("faucet-close", "shelf-place", "push-back"),
  6: ("stick-pull", "peg-unplug-side", "stick-pull"),
  7: ("stick-pull", "push-back", "push-wall"),
  8: ("push-wall", "shelf-place", "push-back"),
}
EPISODE_LENGTH = 200
SOLVER_ITERATIONS = 6
BACKEND = "warp"  # A run's recorded backend: MJX on MuJoCo Warp (no Brax pipeline).
NO_DRIVER_WARNING = "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver."
INSTALL_HINT = 'Continual World needs the [cw] extra: pip install -c constraints.txt -e ".[cw]"'


def _mtcworldmjx() -> Any:
  try:
    import MTCWorldMJX
    import warp
  except ImportError:
    raise MissingExtraError(INSTALL_HINT) from None
  warp.config.quiet = True  # Warp prints a line per kernel module it loads otherwise.
  _init_warp_without_driver_warning(warp)
  return MTCWorldMJX


@functools.cache
def _init_warp_without_driver_warning(warp: Any) -> None:
  """``warp.init()`` (once), dropping the line its native library prints to stderr on every
  machine without an NVIDIA driver (Warp then runs on the CPU, as intended there); anything
  else it prints still comes through."""
  sys.stderr.flush()
  with tempfile.TemporaryFile() as captured:
    saved = os.dup(2)
    os.dup2(captured.fileno(), 2)
    try:
      warp.init()
    finally:  # Also when init raises: what it printed is often the explanation.
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      for line in captured.read().decode(errors="replace").splitlines():
        if not line.startswith(NO_DRIVER_WARNING):
          print(line, file=sys.stderr)


@dataclasses.dataclass(frozen=True, eq=False)
class MetaWorldTaskEnv:
  """One Meta-World task as a ``types.TaskEnv`` with synchronous episodes.

  Two envs are the same program only if they are the same object (``eq=False``).

  Attributes:
    task_name: the Meta-World task without its version, e.g. ``"push-wall"``.
    num_tasks: the scenario's task count (the range of task ids, which pick heads only).
    num_lanes: environments stepped together in one program (envs x seeds): MuJoCo Warp
      shares one contact buffer across ``vmap`` lanes, so its size grows with this.
    episode_length: steps per episode (Continual World: 200).
    hand_reset_steps: physics steps that settle the hand at each reset (Meta-World: 50).
    solver_iterations: MuJoCo's solver and line-search iterations.
  """

  task_name: str
  num_tasks: int
  num_lanes: int = 1
  episode_length: int = EPISODE_LENGTH
  hand_reset_steps: int = 50
  solver_iterations: int = SOLVER_ITERATIONS
  observation_size: ClassVar[int] = 39
  action_size: ClassVar[int] = 4
  synchronous_episodes: ClassVar[bool] = True

  def __post_init__(self):
    for name in ("num_tasks", "num_lanes", "episode_length", "hand_reset_steps"):
      if getattr(self, name) < 1:
        raise ValueError(f"MetaWorldTaskEnv: {name} must be >= 1, got {getattr(self, name)}.")
    cw = _mtcworldmjx()
    from MTCWorldMJX.envs.sawyer_xyz import SawyerXYZConfig

    config = SawyerXYZConfig(
      max_path_length=self.episode_length,
      naconmax=cw.mt_benchmarks.vector_env_naconmax(self.num_lanes),
      hand_reset_steps=self.hand_reset_steps,
      solver_iterations=self.solver_iterations,
      ls_iterations=self.solver_iterations,
    )
    full_name = f"{self.task_name}-v3"
    if full_name not in cw.ENV_CLS_MAP:
      choices = sorted(n.removesuffix("-v3") for n in cw.ENV_CLS_MAP)
      raise ValueError(f"Unknown Meta-World task {self.task_name!r}; choices: {choices}.")
    env = cw.make(full_name, config=config)
    object.__setattr__(self, "_env", env)
    object.__setattr__(self, "_workspace", _warp_workspace(env))

  def reset(self, key: PRNGKey, task_id: TaskId) -> EnvState:
    """A fresh episode with new object and goal positions (``random_init_all``)."""
    del task_id
    inner = self._without_workspace(self._env.reset(key))
    zero = jnp.float32(0.0)
    info = {"truncation": zero, "final_obs": inner.obs, "success": zero}
    return State(inner, inner.obs, zero, zero, {}, info)

  def step(self, state: EnvState, action: Array, task_id: TaskId) -> EnvState:
    """One step; never resets (``done`` is 1.0 at the episode's last step)."""
    del task_id
    inner = self._env.step(self._with_workspace(state.pipeline_state), action)
    inner = self._without_workspace(inner)
    done = jnp.maximum(inner.truncated, inner.terminated)
    info = {
      "truncation": inner.truncated * (1.0 - inner.terminated),
      "final_obs": inner.obs,
      "success": inner.metrics["success"],
    }
    return State(inner, inner.obs, inner.reward, done, {}, info)

  def _without_workspace(self, inner: Any) -> Any:
    data = jax.tree_util.tree_map_with_path(
      lambda path, x: None if jax.tree_util.keystr(path) in self._workspace else x, inner.data
    )
    return inner.replace(data=data)

  def _with_workspace(self, inner: Any) -> Any:
    data = jax.tree_util.tree_map_with_path(
      lambda path, x: self._workspace.get(jax.tree_util.keystr(path), x),
      inner.data,
      is_leaf=lambda x: x is None,
    )
    return inner.replace(data=data)

  def episode_score(self, episode_return: Array, final_state: EnvState) -> Array:
    """The evaluation score: the success flag at the episode's last step."""
    del episode_return
    return final_state.info["success"]


def _warp_workspace(env: Any) -> dict[str, Array]:
  """MuJoCo Warp's workspace in ``mjx.Data``: the fields (the contact buffers) that every
  ``vmap`` lane shares, so a vmapped reset returns them without a batch axis. They are refilled
  at every step, so the env state leaves them out (each of its leaves then has the batch axes
  that the trainer's ``vmap`` over seeds expects) and each step starts them as a fresh
  ``make_data`` does. Returns {path in ``mjx.Data``: its fresh value}."""
  from MTCWorldMJX import mjx_env

  lanes = 3
  batched = jax.eval_shape(jax.vmap(env.reset), jax.random.split(jax.random.key(0), lanes))
  shared = {
    jax.tree_util.keystr(path)
    for path, x in jax.tree_util.tree_flatten_with_path(batched.data)[0]
    if x.ndim == 0 or x.shape[0] != lanes
  }
  config = env.config
  fresh = mjx_env.make_data(
    env.mj_model, env.mjx_model, naconmax=config.naconmax, njmax=config.njmax
  )
  return {
    jax.tree_util.keystr(path): x
    for path, x in jax.tree_util.tree_flatten_with_path(fresh)[0]
    if jax.tree_util.keystr(path) in shared
  }


def lanes_needed(num_envs: int, num_eval_envs: int, num_vmapped: int) -> int:
  """The lanes Warp's shared contact buffers must hold: ``num_vmapped`` runs (seeds, or grid
  points x seeds) stepping their training or evaluation envs, whichever batch is larger."""
  return num_vmapped * max(num_envs, num_eval_envs)


def make_cw_envs(
  task_names: tuple[str, ...], num_lanes: int = 1, **options: Any
) -> tuple[MetaWorldTaskEnv, ...]:
  """One env per task id of ``task_names``; a repeated name reuses its env (one program)."""
  distinct = {
    name: MetaWorldTaskEnv(name, len(task_names), num_lanes, **options)
    for name in dict.fromkeys(task_names)
  }
  return tuple(distinct[name] for name in task_names)
