"""Brax tasks as data: per-task physics multipliers swapped into one compiled step.

A task (``TaskSpec``) is a set of multipliers on the base Brax model: gravity, floor friction,
the mass and collision radius of bodies picked by name, an observation mask, and a per-actuator
action multiplier (0 disables an actuator, -1 flips its sign). ``resolve_tasks`` turns a tuple of
specs into ``TaskParams``, a pytree of arrays stacked on a leading ``[num_tasks]`` axis, in NumPy
and outside ``jit``. ``BraxTaskEnv`` (the ``types.TaskEnv`` protocol) indexes those arrays with a
traced ``task_id`` inside ``reset``/``step`` and swaps the edited ``System`` into the base
environment, as Brax's ``DomainRandomizationVmapWrapper`` does, so every task of a scenario shares
one compiled step.

Task semantics follow the reference code (RewireNeuron, ``scenarios/brax/*.py``); today's Brax
models differ from the reference's in names and geoms, see ``TaskSpec``::

  moon = TaskSpec("moon", gravity=0.15)
  hugefoot = TaskSpec("hugefoot", bodies=(("foot", 1.5),))
  env = make_task_env("halfcheetah", (TaskSpec("normal"), moon, hugefoot))
  state = env.reset(key, jnp.int32(1))
  state = env.step(state, action, jnp.int32(1))
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from collections.abc import Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax import envs as brax_envs
from brax.base import System
from brax.envs import ant, half_cheetah, humanoid
from brax.envs.base import PipelineEnv
from flax import struct

from rewirejax.types import Array, EnvState, PRNGKey, TaskId

__all__ = [
  "ALL_ACTUATORS",
  "BACKENDS",
  "ENV_NAMES",
  "BraxTaskEnv",
  "TaskParams",
  "TaskSpec",
  "actuator_joint_names",
  "apply_task",
  "body_names",
  "make_task_env",
  "obs_mask",
  "resolve_tasks",
]

ENV_NAMES = ("halfcheetah", "ant", "humanoid")
BACKENDS = ("mjx", "spring", "generalized", "positional")
ALL_ACTUATORS = ("*",)  # A joint pattern that matches every actuator.

_LOWER_LEG = "lower_leg"  # Structural name of Ant's unnamed lower-leg bodies (see TaskSpec).
_ROUND_GEOMS = (mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_CAPSULE)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One task: multipliers on the base model (static and hashable).

  Body patterns are case-sensitive substring matches on body names, as in the reference
  (``"foot"`` matches HalfCheetah's ``bfoot`` and ``ffoot``); several matching patterns
  compound. A matched body has its mass (and inertia, so its shape of mass is unchanged)
  multiplied, and the radius (``geom_size[:, 0]``) of one chosen geom:

  * HalfCheetah, Ant: the body's first geom (HalfCheetah ``torso`` -> the torso capsule, not the
    head), except Ant's lower legs, which use their last geom (the foot sphere, the only geom
    of the leg that collides with the floor; the ``*_ankle_geom`` capsule never collides).
  * Humanoid: the body's last geom (``*_shin`` -> the ``*_foot`` sphere; ``torso`` -> ``uwaist``).

  Ant's lower-leg bodies are unnamed in today's model; the unnamed child of ``aux_k`` is called
  ``lower_leg_k`` here, so ``"lower_leg"`` selects all four (the reference's ``"Body"``) and
  ``"lower_leg_2"`` one of them. ``body_names(env)`` lists the names a pattern can match.

  Actuators are chosen by the name of the joint they drive, never by index (Ant's actuator 0
  drives ``hip_4``): Unix shell-style patterns (``fnmatch``), so an exact name such as
  ``"hip_1"`` selects one actuator and ``ALL_ACTUATORS`` (``"*"``) all of them. A pattern that
  matches nothing raises ``ValueError`` when the tasks are resolved.

  Attributes:
    name: task name, for logs.
    gravity: multiplier on the gravity vector.
    friction: multiplier on the friction of every geom (all three MuJoCo coefficients).
    bodies: ``(body pattern, multiplier)`` pairs for mass and collision radius (a dict is
      accepted and stored as pairs).
    obs_mask_fraction: fraction of observations zeroed: ``int(fraction * obs_dim)`` entries,
      placed as the reference does (ones with the first k zeroed, then
      ``np.random.seed(0); np.random.permutation``).
    disabled_actuators: joint patterns whose actuators get action multiplier 0.
    inverted_actuators: joint patterns whose actuators get action multiplier -1.
  """

  name: str
  gravity: float = 1.0
  friction: float = 1.0
  bodies: tuple[tuple[str, float], ...] = ()
  obs_mask_fraction: float = 0.0
  disabled_actuators: tuple[str, ...] = ()
  inverted_actuators: tuple[str, ...] = ()

  def __post_init__(self):
    # Accept lists for convenience but store tuples, so the spec stays hashable.
    items = self.bodies.items() if isinstance(self.bodies, Mapping) else self.bodies
    bodies = tuple((str(pattern), float(scale)) for pattern, scale in items)
    object.__setattr__(self, "bodies", bodies)
    for field in ("disabled_actuators", "inverted_actuators"):
      patterns = getattr(self, field)
      if isinstance(patterns, str):
        raise ValueError(f"{field} must be a tuple of joint patterns, got the string {patterns!r}.")
      object.__setattr__(self, field, tuple(str(p) for p in patterns))
    for field in ("gravity", "friction"):
      if not np.isfinite(getattr(self, field)):
        raise ValueError(f"TaskSpec {self.name!r}: {field} must be finite.")
    if not 0.0 <= self.obs_mask_fraction <= 1.0:
      raise ValueError(f"TaskSpec {self.name!r}: obs_mask_fraction must be in [0, 1].")
    for pattern, scale in self.bodies:
      if not pattern:
        raise ValueError(f"TaskSpec {self.name!r}: empty body pattern.")
      if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"TaskSpec {self.name!r}: body multiplier for {pattern!r} must be > 0.")


@struct.dataclass
class TaskParams:
  """Per-task physics multipliers; every field has a leading task axis ``[T]`` when stacked.

  Shapes below are for one task (``T`` omitted). Body and geom axes follow MuJoCo's indexing,
  body 0 being the world.

  Attributes:
    gravity_scale: ``[]`` multiplier on the gravity vector.
    friction_scale: ``[]`` multiplier on every geom's friction.
    body_mass_scale: ``[num_bodies]`` multiplier on each body's mass and inertia.
    geom_size_scale: ``[num_geoms, 3]`` multiplier on ``geom_size`` (only column 0, the radius,
      differs from 1).
    obs_mask: ``[obs_dim]`` 0/1 observation mask.
    action_scale: ``[act_dim]`` action multiplier: 0 disabled, -1 inverted, 1 otherwise.
  """

  gravity_scale: Array
  friction_scale: Array
  body_mass_scale: Array
  geom_size_scale: Array
  obs_mask: Array
  action_scale: Array

  @property
  def num_tasks(self) -> int:
    """The leading task axis of stacked params."""
    return self.gravity_scale.shape[0]

  def select(self, task_id: TaskId) -> TaskParams:
    """Returns one task's params (out-of-range ids are clamped, as all JAX indexing is)."""
    return jax.tree.map(lambda x: x[task_id], self)


def body_names(env: PipelineEnv) -> tuple[str, ...]:
  """Names that body patterns match, one per MuJoCo body (index 0 is the world).

  Unnamed bodies get a structural name: ``lower_leg_k`` for the child of ``aux_k`` (Ant),
  ``body_<id>`` otherwise.

  Args:
    env: an unwrapped Brax ``PipelineEnv``.

  Returns:
    ``[num_bodies]`` names.
  """
  model = env.sys.mj_model
  raw = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, i) or "" for i in range(model.nbody)]
  names = []
  for i, name in enumerate(raw):
    parent = raw[model.body_parentid[i]]
    if not name and parent.startswith("aux_"):
      name = f"{_LOWER_LEG}_{parent.removeprefix('aux_')}"
    names.append(name or f"body_{i}")
  return tuple(names)


def actuator_joint_names(env: PipelineEnv) -> tuple[str, ...]:
  """Name of the joint each actuator drives, in action order (``[act_dim]``).

  Args:
    env: an unwrapped Brax ``PipelineEnv``.

  Returns:
    ``[act_dim]`` joint names; actuation patterns of ``TaskSpec`` match these.
  """
  model = env.sys.mj_model
  if np.any(model.actuator_trntype != mujoco.mjtTrn.mjTRN_JOINT):
    raise ValueError("Only joint-driven actuators are supported.")
  return tuple(
    mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, int(j)) for j in model.actuator_trnid[:, 0]
  )


def _chosen_geom(env: PipelineEnv, body_id: int, body_name: str) -> int:
  """The geom whose radius a body multiplier scales (see ``TaskSpec``)."""
  model = env.sys.mj_model
  first, num = int(model.body_geomadr[body_id]), int(model.body_geomnum[body_id])
  if num == 0:
    raise ValueError(f"Body {body_name!r} has no geom to scale.")
  use_last = _env_name(env) == "humanoid" or body_name.startswith(_LOWER_LEG)
  return first + num - 1 if use_last else first


def _env_name(env: PipelineEnv) -> str | None:
  """Which of ``ENV_NAMES`` an env is (``None`` for other Brax envs)."""
  classes = {"halfcheetah": half_cheetah.Halfcheetah, "ant": ant.Ant, "humanoid": humanoid.Humanoid}
  return next((name for name, cls in classes.items() if isinstance(env, cls)), None)


def _match_actuators(patterns: Sequence[str], joints: Sequence[str], task: str) -> np.ndarray:
  """Boolean ``[act_dim]`` mask of actuators whose joint matches any pattern."""
  hit = np.zeros(len(joints), dtype=bool)
  for pattern in patterns:
    match = np.array([fnmatch.fnmatchcase(joint, pattern) for joint in joints])
    if not match.any():
      raise ValueError(
        f"Task {task!r}: actuator pattern {pattern!r} matches no actuated joint; "
        f"choices: {list(joints)}."
      )
    hit |= match
  return hit


def obs_mask(obs_dim: int, fraction: float) -> np.ndarray:
  """The reference's fixed observation mask: ``int(fraction * obs_dim)`` zeros, seed 0.

  Args:
    obs_dim: observation size.
    fraction: fraction of entries to zero.

  Returns:
    ``[obs_dim]`` float32 0/1 mask.
  """
  mask = np.ones(obs_dim, dtype=np.float32)
  mask[: int(fraction * obs_dim)] = 0.0
  # RandomState(0) draws what `np.random.seed(0); np.random.permutation` does, without
  # touching NumPy's global generator.
  return np.random.RandomState(0).permutation(mask)


def _resolve_one(env: PipelineEnv, spec: TaskSpec, obs_dim: int) -> dict[str, np.ndarray]:
  model = env.sys.mj_model
  names = body_names(env)
  body_scale = np.ones(model.nbody, dtype=np.float32)
  geom_scale = np.ones((model.ngeom, 3), dtype=np.float32)
  for pattern, scale in spec.bodies:
    matched = [i for i, name in enumerate(names) if i > 0 and pattern in name]
    if not matched:
      raise ValueError(
        f"Task {spec.name!r}: body pattern {pattern!r} matches no body; choices: {list(names[1:])}."
      )
    for i in matched:
      geom = _chosen_geom(env, i, names[i])
      if scale != 1.0 and model.geom_type[geom] not in _ROUND_GEOMS:
        raise ValueError(f"Task {spec.name!r}: geom {geom} of body {names[i]!r} has no radius.")
      body_scale[i] *= scale
      geom_scale[geom, 0] *= scale
  joints = actuator_joint_names(env)
  action_scale = np.ones(len(joints), dtype=np.float32)
  action_scale[_match_actuators(spec.inverted_actuators, joints, spec.name)] *= -1.0
  action_scale[_match_actuators(spec.disabled_actuators, joints, spec.name)] = 0.0
  return {
    "gravity_scale": np.float32(spec.gravity),
    "friction_scale": np.float32(spec.friction),
    "body_mass_scale": body_scale,
    "geom_size_scale": geom_scale,
    "obs_mask": obs_mask(obs_dim, spec.obs_mask_fraction),
    "action_scale": action_scale,
  }


def resolve_tasks(base_env: PipelineEnv, specs: Sequence[TaskSpec]) -> TaskParams:
  """Resolves task specs against a Brax model, in NumPy (call it outside ``jit``).

  Args:
    base_env: the unwrapped Brax ``PipelineEnv`` the tasks edit.
    specs: ``T`` task specs.

  Returns:
    ``TaskParams`` with a leading ``[T]`` axis on every field.

  Raises:
    ValueError: no specs, or a body/actuator pattern that matches nothing (the message lists the
      names it could match).
  """
  if not specs or not all(isinstance(s, TaskSpec) for s in specs):
    raise ValueError(f"specs must be a non-empty sequence of TaskSpec, got {specs!r}.")
  env = base_env.unwrapped
  obs_dim = int(jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs.shape[-1])
  rows = [_resolve_one(env, spec, obs_dim) for spec in specs]
  return TaskParams(**{k: jnp.asarray(np.stack([r[k] for r in rows])) for k in rows[0]})


def apply_task(sys: System, params: TaskParams) -> System:
  """Returns ``sys`` with one task's physics, for every Brax backend.

  The mjx pipeline reads ``opt.gravity``, ``body_mass``, ``body_inertia``; the native pipelines
  (spring, generalized, positional) read ``gravity`` and ``link.inertia.{mass,i}``; all of them
  collide with ``geom_size``/``geom_friction``/``geom_rbound``. Both copies are edited. The mass
  factor also scales inertia (same shape, heavier), and the chosen geom's bounding radius grows
  with its radius (exact for spheres and capsules). ``body_invweight0``/``dof_invweight0`` (MuJoCo
  constraint scaling computed at load) are left at their base values, as Brax's and MuJoCo
  Playground's domain randomisations do. Note that spring/positional use ``mass ** (1 -
  spring_mass_scale)``: Ant sets it to 1, so mass multipliers do nothing there.

  Args:
    sys: the base Brax ``System``.
    params: one task's ``TaskParams`` (no task axis); may be traced.

  Returns:
    The edited ``System``.
  """
  mass = params.body_mass_scale  # [num_bodies], world first.
  link_mass = mass[1:]  # Brax links skip the world body.
  radius_scale = params.geom_size_scale[:, 0]
  return sys.tree_replace(
    {
      "opt.gravity": sys.opt.gravity * params.gravity_scale,
      "gravity": sys.gravity * params.gravity_scale,
      "body_mass": sys.body_mass * mass,
      "body_inertia": sys.body_inertia * mass[:, None],
      "body_subtreemass": _subtree_sum(sys, sys.body_mass * mass),
      "link.inertia.mass": sys.link.inertia.mass * link_mass,
      "link.inertia.i": sys.link.inertia.i * link_mass[:, None, None],
      "geom_friction": sys.geom_friction * params.friction_scale,
      "geom_size": sys.geom_size * params.geom_size_scale,
      "geom_rbound": sys.geom_rbound + sys.geom_size[:, 0] * (radius_scale - 1.0),
    }
  )


def _subtree_sum(sys: System, body_mass: Array) -> Array:
  """``[num_bodies]`` mass of each body's subtree (MuJoCo's ``body_subtreemass``)."""
  parent = sys.mj_model.body_parentid
  ancestor = np.eye(len(parent), dtype=np.float32)  # ancestor[i, j]: j is in i's subtree.
  for j in range(len(parent)):
    i = j
    while i != 0:
      i = parent[i]
      ancestor[i, j] = 1.0
  return jnp.asarray(ancestor) @ body_mass


class BraxTaskEnv:
  """A Brax locomotion env whose physics are picked by a traced task id (``types.TaskEnv``).

  ``reset``/``step`` act on one environment (vmap them for a batch) and compile once for all
  tasks. ``step`` multiplies the action by the task's action multiplier before the physics and
  the control cost, masks the observation, counts steps, and auto-resets to a fresh random
  initial state (the key lives in ``state.info["key"]``) when the episode terminates, reaches
  ``episode_length`` steps (``info["truncation"] = 1`` unless it also terminated), or diverges:
  a non-finite value anywhere in the new observation, reward or physics state ends the episode
  as terminal with ``info["nan"] = 1``, and its ``final_obs``, reward and metrics are zeroed
  where non-finite, so NaNs never reach the learner.

  ``state.info`` holds ``key``, ``steps`` (int32), ``truncation``, ``final_obs`` (the true
  next observation of the step just taken) and ``nan``.

  Pass ``task_id`` as an int32 array (``jnp.int32(k)``): a Python int is weakly typed and a
  jitted function traces once more for it. Out-of-range ids are clamped (JAX indexing).
  """

  def __init__(
    self,
    env_name: str,
    tasks: Sequence[TaskSpec],
    backend: str = "mjx",
    episode_length: int = 1000,
  ):
    """Builds the base env and resolves the tasks.

    Args:
      env_name: one of ``ENV_NAMES``.
      tasks: ``T`` task specs; ``task_id`` indexes them.
      backend: one of ``BACKENDS``.
      episode_length: time limit in steps (action repeat 1).

    Raises:
      ValueError: unknown env name or backend, bad episode length or task pattern.
    """
    if env_name not in ENV_NAMES:
      raise ValueError(f"Unknown env {env_name!r}; choices: {list(ENV_NAMES)}.")
    if backend not in BACKENDS:
      raise ValueError(f"Unknown backend {backend!r}; choices: {list(BACKENDS)}.")
    if episode_length < 1:
      raise ValueError(f"episode_length must be >= 1, got {episode_length}.")
    self.env_name = env_name
    self.backend = backend
    self.episode_length = int(episode_length)
    self.tasks = tuple(tasks)
    self.base_env: PipelineEnv = brax_envs.get_environment(env_name, backend=backend)
    self.params = resolve_tasks(self.base_env, self.tasks)
    self.num_tasks = len(self.tasks)
    self.observation_size = int(self.params.obs_mask.shape[-1])
    self.action_size = int(self.base_env.action_size)
    self._base_sys = self.base_env.sys

  def task_system(self, task_id: TaskId) -> System:
    """The base ``System`` with task ``task_id``'s physics (``task_id`` may be traced)."""
    return apply_task(self._base_sys, self.params.select(task_id))

  @contextlib.contextmanager
  def _with_sys(self, sys: System) -> Iterator[PipelineEnv]:
    """Swaps ``sys`` into the base env for one traced call, as Brax's DR wrapper does."""
    self.base_env.sys = sys
    try:
      yield self.base_env
    finally:
      self.base_env.sys = self._base_sys

  def _fresh(self, key: PRNGKey, sys: System, params: TaskParams) -> EnvState:
    with self._with_sys(sys) as env:
      state = env.reset(key)
    return state.replace(obs=state.obs * params.obs_mask)

  def reset(self, key: PRNGKey, task_id: TaskId) -> EnvState:
    """Starts an episode of task ``task_id``.

    Args:
      key: PRNG key.
      task_id: int32 scalar, may be traced.

    Returns:
      The initial state; ``obs`` is ``[obs_dim]``.
    """
    params = self.params.select(task_id)
    key, key_reset = jax.random.split(key)
    state = self._fresh(key_reset, apply_task(self._base_sys, params), params)
    zero = jnp.zeros((), jnp.float32)
    info = {
      "key": key,
      "steps": jnp.zeros((), jnp.int32),
      "truncation": zero,
      "final_obs": state.obs,
      "nan": zero,
    }
    return state.replace(reward=zero, done=zero, info=info)

  def step(self, state: EnvState, action: Array, task_id: TaskId) -> EnvState:
    """Takes one step of task ``task_id``, auto-resetting at episode end.

    Args:
      state: the current state.
      action: ``[act_dim]`` action in [-1, 1], before the task's action multiplier.
      task_id: int32 scalar, may be traced.

    Returns:
      The next state (see the class docstring for ``done``, ``reward`` and ``info``).
    """
    params = self.params.select(task_id)
    sys = apply_task(self._base_sys, params)
    # Brax envs update `metrics` in place: hand them a copy so the input state stays intact.
    # `done` is cleared too: Brax envs without termination (HalfCheetah) pass it through, so a
    # finished episode would otherwise stay done forever after its auto-reset.
    inner = state.replace(metrics=dict(state.metrics), info={}, done=jnp.zeros_like(state.done))
    with self._with_sys(sys) as env:
      nxt = env.step(inner, action * params.action_scale)
    obs = nxt.obs * params.obs_mask

    diverged = ~(_all_finite(nxt.pipeline_state) & _all_finite(obs) & jnp.isfinite(nxt.reward))
    terminated = jnp.logical_or(nxt.done > 0, diverged)
    steps = state.info["steps"] + 1
    timeout = steps >= self.episode_length
    done = jnp.logical_or(terminated, timeout)

    key, key_reset = jax.random.split(state.info["key"])
    fresh = self._fresh(key_reset, sys, params)
    pipeline_state = jax.tree.map(
      lambda new, old: jnp.where(done, new, old), fresh.pipeline_state, nxt.pipeline_state
    )
    final_obs = _zero_nonfinite(obs)
    info = {
      "key": key,
      "steps": jnp.where(done, 0, steps),
      "truncation": jnp.logical_and(timeout, ~terminated).astype(jnp.float32),
      "final_obs": final_obs,
      "nan": diverged.astype(jnp.float32),
    }
    return state.replace(
      pipeline_state=pipeline_state,
      obs=jnp.where(done, fresh.obs, final_obs),
      reward=_zero_nonfinite(nxt.reward.astype(jnp.float32)),
      done=done.astype(jnp.float32),
      # Strong float32 like reset's: Brax Ant reports some metrics as Python floats, whose weak
      # type would change the state's avals and retrace every jitted step.
      metrics={
        k: _zero_nonfinite(jnp.asarray(v).astype(jnp.float32)) for k, v in nxt.metrics.items()
      },
      info=info,
    )


def _all_finite(tree) -> Array:
  """Scalar bool: every floating leaf of ``tree`` is finite."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _zero_nonfinite(x: Array) -> Array:
  return jnp.where(jnp.isfinite(x), x, jnp.zeros_like(x))


def make_task_env(
  env_name: str,
  tasks: Sequence[TaskSpec],
  backend: str = "mjx",
  episode_length: int = 1000,
) -> BraxTaskEnv:
  """Builds a ``BraxTaskEnv`` (see its docstring for arguments)."""
  return BraxTaskEnv(env_name, tasks, backend=backend, episode_length=episode_length)
