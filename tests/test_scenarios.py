"""The scenarios: task sequences as the reference defines them, and every named task's physics
edits read back from the edited ``System`` (written out by hand below, per today's models)."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from rewirejax.envs import actuator_joint_names, body_names
from rewirejax.envs.scenarios import (
  TASKS,
  get_scenario,
  get_task,
  make_scenario_env,
  scenario_names,
)
from rewirejax.envs.toy import TargetReachEnv

pytestmark = pytest.mark.filterwarnings(
  "ignore:Brax System:UserWarning", "ignore::DeprecationWarning:brax.*"
)

SEQUENCES = {  # Implementation notes §5, scenario table.
  "halfcheetah/forgetting": ["hugefoot", "moon", "carry_stuff", "rainfall"],
  "halfcheetah/transfer": [
    "carry_stuff_hugegravity",
    "moon",
    "defective_module",
    "hugefoot_rainfall",
  ],
  "halfcheetah/robustness": ["normal", "inverted_actions", "normal", "inverted_actions"],
  "halfcheetah/compositionality": ["tinyfoot", "moon", "carry_stuff_hugegravity", "tinyfoot_moon"],
  "ant/forgetting": ["normal", "hugefoot", "rainfall", "moon"],
  "ant/transfer": [
    "disabled_first_diagonal",
    "disabled_second_diagonal",
    "disabled_forefeet",
    "disabled_backfeet",
  ],
  "ant/robustness": ["normal", "inverted_actions", "normal", "inverted_actions"],
  "ant/compositionality": [
    "disabled_hard1",
    "disabled_hard2",
    "disabled_forefeet",
    "disabled_backfeet",
  ],
  "humanoid/hard": ["normal", "moon", "carrystuff", "tinyfeet"],
}

CHEETAH_FEET = ("bfoot", "ffoot")
ANT_LOWER_LEGS = ("lower_leg_1", "lower_leg_2", "lower_leg_3", "lower_leg_4")
ANT_FEET = ("left_foot_geom", "right_foot_geom", "third_foot_geom", "fourth_foot_geom")


def _legs(*legs):
  return {f"{joint}_{leg}" for leg in legs for joint in ("hip", "ankle")}


# Expected edits: gravity, friction, {body: mass factor}, {geom: radius factor}, disabled joints,
# inverted joints ("*": all), masked observations. Everything not listed must stay at 1.
EXPECTED = {
  "halfcheetah": {
    "normal": {},
    "hugefoot": {
      "mass": dict.fromkeys(CHEETAH_FEET, 1.5),
      "radius": dict.fromkeys(CHEETAH_FEET, 1.5),
    },
    "tinyfoot": {
      "mass": dict.fromkeys(CHEETAH_FEET, 0.5),
      "radius": dict.fromkeys(CHEETAH_FEET, 0.5),
    },
    "moon": {"gravity": 0.15},
    "rainfall": {"friction": 0.4},
    "carry_stuff": {"mass": {"torso": 4.0}, "radius": {"torso": 4.0}},
    "carry_stuff_hugegravity": {"gravity": 1.5, "mass": {"torso": 4.0}, "radius": {"torso": 4.0}},
    "hugefoot_rainfall": {
      "friction": 0.4,
      "mass": dict.fromkeys(CHEETAH_FEET, 1.5),
      "radius": dict.fromkeys(CHEETAH_FEET, 1.5),
    },
    "tinyfoot_moon": {
      "gravity": 0.15,
      "mass": dict.fromkeys(CHEETAH_FEET, 0.5),
      "radius": dict.fromkeys(CHEETAH_FEET, 0.5),
    },
    "defective_module": {"masked_obs": 8},  # int(0.5 x 17)
    "inverted_actions": {"inverted": "*"},
  },
  "ant": {
    "normal": {},
    "hugefoot": {
      "mass": dict.fromkeys(ANT_LOWER_LEGS, 1.5),
      "radius": dict.fromkeys(ANT_FEET, 1.5),
    },
    "moon": {"gravity": 0.7},
    "rainfall": {"friction": 0.375},
    "disabled_hard1": {"disabled": _legs(2, 3, 4)},
    "disabled_hard2": {"disabled": _legs(1, 3, 4)},
    "disabled_forefeet": {"disabled": _legs(1, 2)},
    "disabled_backfeet": {"disabled": _legs(3, 4)},
    "disabled_first_diagonal": {"disabled": _legs(1, 3)},
    "disabled_second_diagonal": {"disabled": _legs(2, 4)},
    "inverted_actions": {"inverted": "*"},
  },
  "humanoid": {
    "normal": {},
    "moon": {"gravity": 0.15},
    "carrystuff": {"mass": {"torso": 4.0, "lwaist": 4.0}, "radius": {"uwaist": 4.0, "lwaist": 4.0}},
    "tinyfeet": {
      "mass": {"right_shin": 0.5, "left_shin": 0.5},
      "radius": {"right_foot": 0.5, "left_foot": 0.5},
    },
  },
}


@functools.cache
def _all_tasks_env(env_name):
  """One env per body holding every named task of ``env_name``, in ``TASKS`` order."""
  from rewirejax.envs import make_task_env

  return make_task_env(env_name, tuple(TASKS[env_name].values()))


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_scenario_sequences(name):
  scenario = get_scenario(name)
  env_name = name.split("/")[0]
  repeats = 1 if env_name == "humanoid" else 2
  assert scenario.env_name == env_name
  assert [t.name for t in scenario.tasks] == SEQUENCES[name] * repeats
  assert len(scenario.tasks) == (4 if env_name == "humanoid" else 8)
  assert scenario.steps_per_task == (2_000_000 if env_name == "humanoid" else 1_000_000)
  assert scenario.repeat_period == (2 if "robustness" in name else 4)


# Continual World, as in implementation notes §8 (the reference's -v1 task names).
CW_SEQUENCES = {
  "cw/cw10": (
    "hammer", "push-wall", "faucet-close", "push-back", "stick-pull", "handle-press-side",
    "push", "shelf-place", "window-close", "peg-unplug-side",
  ),
  "cw/cw3-t1": ("push", "window-close", "hammer"),
  "cw/cw3-t2": ("hammer", "window-close", "faucet-close"),
  "cw/cw3-t3": ("window-close", "handle-press-side", "peg-unplug-side"),
  "cw/cw3-t4": ("faucet-close", "shelf-place", "peg-unplug-side"),
  "cw/cw3-t5": ("faucet-close", "shelf-place", "push-back"),
  "cw/cw3-t6": ("stick-pull", "peg-unplug-side", "stick-pull"),
  "cw/cw3-t7": ("stick-pull", "push-back", "push-wall"),
  "cw/cw3-t8": ("push-wall", "shelf-place", "push-back"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CW_SEQUENCES))
def test_continual_world_sequences(name):
  scenario = get_scenario(name)
  assert scenario.env_name == "cw"
  assert tuple(t.name for t in scenario.tasks) == CW_SEQUENCES[name]  # Once, no repeats.
  assert scenario.steps_per_task == 1_000_000
  assert scenario.repeat_period == len(scenario.tasks)


def test_every_scenario_is_listed_and_unknown_names_fail():
  assert set(SEQUENCES) | set(CW_SEQUENCES) | {"toy/tiny"} == set(scenario_names())
  with pytest.raises(ValueError, match="choices"):
    get_scenario("halfcheetah/forgeting")
  with pytest.raises(ValueError, match="choices"):
    get_task("ant", "tinyfoot")


@pytest.mark.parametrize(
  "env_name,task_name", [(e, t) for e, tasks in EXPECTED.items() for t in tasks]
)
def test_named_task_edits_exactly_its_definition(env_name, task_name):
  assert set(EXPECTED[env_name]) == set(TASKS[env_name])  # The table covers every named task.
  env = _all_tasks_env(env_name)
  expected = EXPECTED[env_name][task_name]
  task_id = jnp.int32(list(TASKS[env_name]).index(task_name))
  base, sys = env.base_env.sys, env.task_system(task_id)

  gravity = np.asarray(sys.opt.gravity)[2] / np.asarray(base.opt.gravity)[2]
  np.testing.assert_allclose(gravity, expected.get("gravity", 1.0), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(sys.gravity)[2] / np.asarray(base.gravity)[2], gravity)
  np.testing.assert_allclose(
    np.asarray(sys.geom_friction) / np.asarray(base.geom_friction),
    expected.get("friction", 1.0),
    rtol=1e-6,
  )

  bodies = body_names(env.base_env)[1:]  # Without the world body (mass 0).
  mass = np.asarray(sys.body_mass)[1:] / np.asarray(base.body_mass)[1:]
  want_mass = [expected.get("mass", {}).get(b, 1.0) for b in bodies]
  np.testing.assert_allclose(mass, want_mass, rtol=1e-6)
  link_mass = np.asarray(sys.link.inertia.mass) / np.asarray(base.link.inertia.mass)
  np.testing.assert_allclose(link_mass, want_mass, rtol=1e-6)  # Native backends too.

  model = base.mj_model
  geoms = [model.geom(i).name for i in range(model.ngeom)]
  radius = np.asarray(sys.geom_size)[:, 0] / np.asarray(base.geom_size)[:, 0]
  want_radius = [expected.get("radius", {}).get(g, 1.0) for g in geoms]
  np.testing.assert_allclose(radius, want_radius, rtol=1e-6)

  joints = actuator_joint_names(env.base_env)
  inverted = expected.get("inverted", set())
  want_action = [
    0.0 if j in expected.get("disabled", ()) else -1.0 if inverted == "*" or j in inverted else 1.0
    for j in joints
  ]
  np.testing.assert_array_equal(np.asarray(env.params.action_scale[task_id]), want_action)
  masked = int(np.sum(np.asarray(env.params.obs_mask[task_id]) == 0))
  assert masked == expected.get("masked_obs", 0)


def test_tiny_scenario_runs_on_the_toy_env():
  scenario = get_scenario("toy/tiny")
  env = make_scenario_env(scenario)
  assert isinstance(env, TargetReachEnv) and env.num_tasks == len(scenario.tasks) == 4
  assert [t.name for t in scenario.tasks] == ["target", "flipped_target"] * 2
