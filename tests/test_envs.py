"""Tests for rewirejax.envs.tasks: each task edit changes the physics it should, on every field
the backends read, and all tasks share one compiled step.

Compiles are the cost on CPU, so each env is compiled once (module fixtures: one jitted
``reset`` and one jitted ``step``, both wrapped in ``chex.assert_max_traces(n=1)``) and every
rollout test drives them with a Python loop of a few steps. HalfCheetah runs on 'spring' (the
cheapest backend to compile that shows gravity, mass and friction); Ant runs on 'mjx', the
default backend.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewirejax.envs import (
  ALL_ACTUATORS,
  BACKENDS,
  ENV_NAMES,
  TaskSpec,
  actuator_joint_names,
  apply_task,
  body_names,
  make_task_env,
  obs_mask,
  resolve_tasks,
)

pytestmark = pytest.mark.filterwarnings(
  "ignore:Brax System:UserWarning", "ignore::DeprecationWarning:brax.*"
)

NUM_STEPS = 12

NORMAL = TaskSpec("normal")
CHEETAH_TASKS = (
  NORMAL,
  TaskSpec("moon", gravity=0.15),
  TaskSpec("carry_stuff", bodies=(("torso", 4.0), ("thigh", 1.0), ("shin", 1.0), ("foot", 1.0))),
  TaskSpec("rainfall", friction=0.4),
  TaskSpec("inverted_actions", inverted_actuators=ALL_ACTUATORS),
  TaskSpec("defective_module", obs_mask_fraction=0.5),
  TaskSpec("hugefoot", bodies=(("foot", 1.5),)),
)
CHEETAH = {spec.name: i for i, spec in enumerate(CHEETAH_TASKS)}
# Legs 1 and 2 off ("disabled_forefeet"), by joint name: Ant's actuator 0 drives hip_4.
ANT_TASKS = (
  NORMAL,
  TaskSpec("disabled_forefeet", disabled_actuators=("hip_1", "ankle_1", "hip_2", "ankle_2")),
  TaskSpec("hugefoot", bodies=(("lower_leg", 1.5),)),
)
ANT_EPISODE_LENGTH = 3


def _jit_env(env):
  """Jitted reset/step that fail if traced twice (task ids are data, not static)."""
  reset = jax.jit(chex.assert_max_traces(env.reset, n=1))
  step = jax.jit(chex.assert_max_traces(env.step, n=1))
  return reset, step


@pytest.fixture(scope="module")
def cheetah():
  env = make_task_env("halfcheetah", CHEETAH_TASKS, backend="spring")
  return (env, *_jit_env(env))


@pytest.fixture(scope="module")
def ant():
  env = make_task_env("ant", ANT_TASKS, backend="mjx", episode_length=ANT_EPISODE_LENGTH)
  return (env, *_jit_env(env))


@pytest.fixture(scope="module")
def cheetah_actions(cheetah):
  env = cheetah[0]
  return jax.random.uniform(
    jax.random.PRNGKey(1), (NUM_STEPS, env.action_size), minval=-1, maxval=1
  )


def _rollout(env_fns, task_id, actions):
  """Final observations ``[N, obs_dim]`` and rewards ``[N]`` from a fixed key."""
  _, reset, step = env_fns
  task_id = jnp.int32(task_id)
  state = reset(jax.random.PRNGKey(0), task_id)
  obs, rewards = [], []
  for action in actions:
    state = step(state, action, task_id)
    obs.append(state.info["final_obs"])
    rewards.append(state.reward)
  return np.stack(obs), np.stack(rewards)


@pytest.fixture(scope="module")
def cheetah_rollouts(cheetah, cheetah_actions):
  return {name: _rollout(cheetah, i, cheetah_actions) for name, i in CHEETAH.items()}


@pytest.mark.parametrize("task", ["moon", "carry_stuff", "rainfall", "hugefoot"])
def test_physics_task_changes_rollout(cheetah_rollouts, task):
  base_obs, _ = cheetah_rollouts["normal"]
  task_obs, _ = cheetah_rollouts[task]
  assert np.all(np.isfinite(task_obs))
  assert not np.allclose(task_obs, base_obs, atol=1e-4), task


def test_moon_falls_slower(cheetah, cheetah_actions):
  env, reset, step = cheetah
  # One step with zero action: lower gravity leaves a higher vertical velocity (obs 9 = rootz').
  zero = jnp.zeros(env.action_size)
  vel = {}
  for name in ("normal", "moon"):
    task_id = jnp.int32(CHEETAH[name])
    vel[name] = step(reset(jax.random.PRNGKey(0), task_id), zero, task_id).obs[9]
  assert vel["moon"] > vel["normal"]


def test_inverted_actions_equal_negated_actions(cheetah, cheetah_actions):
  obs_inv, rew_inv = _rollout(cheetah, CHEETAH["inverted_actions"], cheetah_actions)
  obs_neg, rew_neg = _rollout(cheetah, CHEETAH["normal"], -cheetah_actions)
  np.testing.assert_array_equal(obs_inv, obs_neg)
  np.testing.assert_array_equal(rew_inv, rew_neg)


def test_obs_mask_zeros_the_reference_entries(cheetah, cheetah_rollouts):
  env = cheetah[0]
  # The reference's 18-dim HalfCheetah mask (implementation notes, section 5).
  np.testing.assert_array_equal(
    obs_mask(18, 0.5), [0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1]
  )
  mask = obs_mask(env.observation_size, 0.5)
  assert mask.sum() == env.observation_size - 8  # int(0.5 * 17) zeros.
  np.testing.assert_array_equal(env.params.obs_mask[CHEETAH["defective_module"]], mask)
  # Same physics as the base task, masked observation.
  masked_obs, _ = cheetah_rollouts["defective_module"]
  base_obs, _ = cheetah_rollouts["normal"]
  np.testing.assert_array_equal(masked_obs, base_obs * mask)
  assert np.all(base_obs[:, mask == 0] != 0)


def test_one_trace_for_all_task_ids(cheetah):
  env, reset, step = cheetah
  action = jnp.zeros(env.action_size)
  for task_id in range(env.num_tasks):  # The jitted fns raise if traced twice.
    step(reset(jax.random.PRNGKey(0), jnp.int32(task_id)), action, jnp.int32(task_id))


def _avals(tree):
  """``(path, shape, dtype, weak_type)`` of every leaf."""
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return [(jax.tree_util.keystr(k), x.shape, str(x.dtype), bool(x.weak_type)) for k, x in leaves]


@pytest.mark.parametrize("env_fixture", ["cheetah", "ant"])
def test_vmapped_step_keeps_state_avals(request, env_fixture):
  # Per-env task ids under vmap, and the output state is a valid scan carry: same structure,
  # shapes, dtypes and weak types as the input (Brax Ant's float metrics once broke this).
  env, reset, _ = request.getfixturevalue(env_fixture)
  state = reset(jax.random.PRNGKey(0), jnp.int32(0))
  batch = jax.tree.map(lambda x: jnp.stack([x, x]), state)
  actions = jnp.zeros((2, env.action_size))
  out = jax.eval_shape(jax.vmap(env.step), batch, actions, jnp.array([0, 1], jnp.int32))
  assert _avals(out) == _avals(batch)


def test_divergence_resets_instead_of_propagating_nan(cheetah):
  env, reset, step = cheetah
  state = reset(jax.random.PRNGKey(0), jnp.int32(0))
  poisoned = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), state.pipeline_state)
  state = step(state.replace(pipeline_state=poisoned), jnp.zeros(env.action_size), jnp.int32(0))
  assert state.done == 1 and state.info["nan"] == 1 and state.info["truncation"] == 0
  assert np.all(np.isfinite(state.info["final_obs"])) and np.isfinite(state.reward)
  assert np.all(np.isfinite(state.obs))
  leaves = jax.tree.leaves(state.pipeline_state)
  assert all(np.all(np.isfinite(x)) for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact))


def test_disabled_actuators_have_no_effect(ant):
  env, reset, step = ant
  scale = env.params.action_scale[1]
  # Actuator order: hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3.
  assert actuator_joint_names(env.base_env)[:4] == ("hip_4", "ankle_4", "hip_1", "ankle_1")
  np.testing.assert_array_equal(scale, [1, 1, 0, 0, 0, 0, 1, 1])
  action = jax.random.uniform(jax.random.PRNGKey(2), (env.action_size,), minval=-1, maxval=1)
  zeroed = jnp.where(scale == 0, 0.0, action)
  for task_id, same in ((1, True), (0, False)):
    state = reset(jax.random.PRNGKey(0), jnp.int32(task_id))
    a = step(state, action, jnp.int32(task_id))
    b = step(state, zeroed, jnp.int32(task_id))
    if same:
      chex.assert_trees_all_equal(a.pipeline_state.q, b.pipeline_state.q)
      chex.assert_trees_all_equal(a.pipeline_state.qd, b.pipeline_state.qd)
      chex.assert_trees_all_equal(a.info["final_obs"], b.info["final_obs"])
      assert a.reward == b.reward  # The control cost sees the masked action.
    else:  # Sanity: on the normal task the same entries do move the ant.
      assert not np.allclose(a.info["final_obs"], b.info["final_obs"], atol=1e-4)


def test_truncation_at_episode_length(ant):
  env, reset, step = ant
  task_id = jnp.int32(0)
  state = reset(jax.random.PRNGKey(0), task_id)
  action = jnp.zeros(env.action_size)
  for t in range(1, ANT_EPISODE_LENGTH + 2):
    state = step(state, action, task_id)
    ended = t == ANT_EPISODE_LENGTH
    assert state.done == ended and state.info["truncation"] == ended, t
    assert state.info["steps"] == (0 if ended else t % ANT_EPISODE_LENGTH), t
    if ended:  # A fresh episode started; final_obs is the true last observation.
      assert not np.allclose(state.info["final_obs"], state.obs)
    else:
      np.testing.assert_array_equal(state.info["final_obs"], state.obs)
    assert state.info["nan"] == 0


def test_episodes_after_the_first_end_on_time_too():
  """HalfCheetah never terminates, and Brax passes its `done` through: a regression test
  that an auto-reset episode does not stay done forever after the first time limit."""
  env = make_task_env("halfcheetah", (TaskSpec("normal"),), backend="spring", episode_length=2)
  step = jax.jit(env.step)
  state = jax.jit(env.reset)(jax.random.PRNGKey(0), jnp.int32(0))
  dones = []
  for _ in range(7):
    state = step(state, jnp.zeros(env.action_size), jnp.int32(0))
    dones.append(float(state.done))
  assert dones == [0, 1, 0, 1, 0, 1, 0]


def _scaled(new, old):
  """Elementwise ``new / old``, with 1 where ``old`` is 0 (the world body's mass)."""
  new, old = np.asarray(new, np.float64), np.asarray(old, np.float64)
  return np.divide(new, old, out=np.ones_like(old), where=old != 0)


def test_hugefoot_lands_in_mjx_and_native_fields(cheetah):
  env = cheetah[0]
  base, sys = env.base_env.sys, env.task_system(jnp.int32(CHEETAH["hugefoot"]))
  names = body_names(env.base_env)
  expected = np.array([1.5 if name in ("bfoot", "ffoot") else 1.0 for name in names])
  np.testing.assert_allclose(_scaled(sys.body_mass[1:], base.body_mass[1:]), expected[1:])
  np.testing.assert_allclose(_scaled(sys.link.inertia.mass, base.link.inertia.mass), expected[1:])
  np.testing.assert_allclose(
    _scaled(sys.body_inertia, base.body_inertia)[1:], expected[1:, None] * np.ones(3)
  )
  np.testing.assert_allclose(
    _scaled(
      sys.link.inertia.i[:, [0, 1, 2], [0, 1, 2]], base.link.inertia.i[:, [0, 1, 2], [0, 1, 2]]
    ),
    expected[1:, None] * np.ones(3),
  )
  geom_body = np.asarray(base.geom_bodyid)
  radius = _scaled(sys.geom_size[:, 0], base.geom_size[:, 0])
  np.testing.assert_allclose(radius, expected[geom_body])  # One geom per foot body.
  np.testing.assert_array_equal(sys.geom_size[:, 1:], base.geom_size[:, 1:])
  np.testing.assert_allclose(sys.geom_rbound - base.geom_rbound, 0.046 * (expected[geom_body] - 1))


def test_gravity_friction_land_in_mjx_and_native_fields(cheetah):
  env = cheetah[0]
  base = env.base_env.sys
  moon = env.task_system(jnp.int32(CHEETAH["moon"]))
  np.testing.assert_allclose(moon.opt.gravity, 0.15 * np.asarray(base.opt.gravity), rtol=1e-6)
  np.testing.assert_allclose(moon.gravity, 0.15 * np.asarray(base.gravity), rtol=1e-6)
  rain = env.task_system(jnp.int32(CHEETAH["rainfall"]))
  np.testing.assert_allclose(rain.geom_friction, 0.4 * np.asarray(base.geom_friction), rtol=1e-6)
  torso = env.task_system(jnp.int32(CHEETAH["carry_stuff"]))
  # Torso mass x4 and its first geom (the torso capsule, not the head) radius x4.
  np.testing.assert_allclose(_scaled(torso.body_mass, base.body_mass)[1], 4.0)
  np.testing.assert_allclose(_scaled(torso.geom_size[:, 0], base.geom_size[:, 0])[1:3], [4.0, 1.0])
  np.testing.assert_allclose(
    torso.body_subtreemass[0], base.body_subtreemass[0] + 3 * base.body_mass[1], rtol=1e-6
  )


def test_ant_lower_legs_scale_mass_and_foot_radius(ant):
  env = ant[0]
  base, sys = env.base_env.sys, env.task_system(jnp.int32(2))
  names = body_names(env.base_env)
  assert names[3::2] == ("lower_leg_1", "lower_leg_2", "lower_leg_3", "lower_leg_4")
  mass = _scaled(sys.body_mass[1:], base.body_mass[1:])
  np.testing.assert_allclose(mass, [1, 1, 1.5, 1, 1.5, 1, 1.5, 1, 1.5])
  np.testing.assert_allclose(_scaled(sys.link.inertia.mass, base.link.inertia.mass), mass)
  radius = _scaled(sys.geom_size[:, 0], base.geom_size[:, 0])
  feet = [8, 11, 14, 17]  # *_foot_geom spheres, the only leg geoms that touch the floor.
  np.testing.assert_allclose(radius[feet], 1.5)
  np.testing.assert_allclose(np.delete(radius, feet), 1.0)


def test_humanoid_shin_scales_last_geom():
  env = make_task_env("humanoid", (TaskSpec("tinyfeet", bodies=(("shin", 0.5),)),))
  base, sys = env.base_env.sys, env.task_system(jnp.int32(0))
  radius = _scaled(sys.geom_size[:, 0], base.geom_size[:, 0])
  geom_names = [sys.mj_model.geom(i).name for i in range(sys.ngeom)]
  np.testing.assert_allclose(
    radius[[geom_names.index("right_foot"), geom_names.index("left_foot")]], 0.5
  )
  assert np.sum(radius != 1) == 2
  assert env.observation_size == 244 and env.action_size == 17


def test_bad_patterns_raise_with_choices(cheetah):
  base_env = cheetah[0].base_env
  with pytest.raises(ValueError, match="bfoot"):
    resolve_tasks(base_env, (TaskSpec("x", bodies=(("hoof", 2.0),)),))
  with pytest.raises(ValueError, match="fthigh"):
    resolve_tasks(base_env, (TaskSpec("x", disabled_actuators=("hip_1",)),))
  with pytest.raises(ValueError, match="tuple"):
    TaskSpec("x", inverted_actuators="bthigh")


def test_unknown_env_or_backend_raise_with_choices():
  with pytest.raises(ValueError, match="halfcheetah"):
    make_task_env("walker", (NORMAL,))
  with pytest.raises(ValueError, match="generalized"):
    make_task_env("ant", (NORMAL,), backend="pbd")
  assert set(ENV_NAMES) == {"halfcheetah", "ant", "humanoid"}
  assert set(BACKENDS) == {"mjx", "spring", "generalized", "positional"}


def test_apply_task_identity_for_base_task(cheetah):
  env = cheetah[0]
  base = env.base_env.sys
  sys = apply_task(base, resolve_tasks(env.base_env, (NORMAL,)).select(0))
  chex.assert_trees_all_close(sys, base)
