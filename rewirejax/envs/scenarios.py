"""The continual scenarios of the paper as data: named tasks and task sequences.

Task definitions and multipliers follow the reference code (implementation notes §5), mapped
onto today's Brax models (§11): Ant legs are chosen by joint name (leg k = ``hip_k`` and
``ankle_k``), Ant's lower legs by the structural name ``lower_leg``; HalfCheetah's ``foot``
matches ``bfoot`` and ``ffoot``; Humanoid's ``shin`` scales ``*_shin`` and their foot spheres.
"""

from __future__ import annotations

import dataclasses

from rewirejax.envs import cw
from rewirejax.envs.tasks import ALL_ACTUATORS, TaskSpec, make_task_env
from rewirejax.envs.toy import TargetReachEnv


def _ant_legs_off(*legs: int) -> tuple[str, ...]:
  return tuple(f"{joint}_{leg}" for leg in legs for joint in ("hip", "ankle"))


TASKS: dict[str, dict[str, TaskSpec]] = {
  "halfcheetah": {
    t.name: t
    for t in (
      TaskSpec("normal"),
      TaskSpec("hugefoot", bodies=(("foot", 1.5),)),
      TaskSpec("tinyfoot", bodies=(("foot", 0.5),)),
      TaskSpec("moon", gravity=0.15),
      TaskSpec("rainfall", friction=0.4),
      TaskSpec("carry_stuff", bodies=(("torso", 4.0),)),
      TaskSpec("carry_stuff_hugegravity", gravity=1.5, bodies=(("torso", 4.0),)),
      TaskSpec("hugefoot_rainfall", friction=0.4, bodies=(("foot", 1.5),)),
      TaskSpec("tinyfoot_moon", gravity=0.15, bodies=(("foot", 0.5),)),
      TaskSpec("defective_module", obs_mask_fraction=0.5),
      TaskSpec("inverted_actions", inverted_actuators=ALL_ACTUATORS),
    )
  },
  "ant": {
    t.name: t
    for t in (
      TaskSpec("normal"),
      TaskSpec("hugefoot", bodies=(("lower_leg", 1.5),)),
      TaskSpec("moon", gravity=0.7),
      TaskSpec("rainfall", friction=0.375),
      TaskSpec("disabled_hard1", disabled_actuators=_ant_legs_off(2, 3, 4)),
      TaskSpec("disabled_hard2", disabled_actuators=_ant_legs_off(1, 3, 4)),
      TaskSpec("disabled_forefeet", disabled_actuators=_ant_legs_off(1, 2)),
      TaskSpec("disabled_backfeet", disabled_actuators=_ant_legs_off(3, 4)),
      TaskSpec("disabled_first_diagonal", disabled_actuators=_ant_legs_off(1, 3)),
      TaskSpec("disabled_second_diagonal", disabled_actuators=_ant_legs_off(2, 4)),
      TaskSpec("inverted_actions", inverted_actuators=ALL_ACTUATORS),
    )
  },
  "humanoid": {
    t.name: t
    for t in (
      TaskSpec("normal"),
      TaskSpec("moon", gravity=0.15),
      TaskSpec("carrystuff", bodies=(("torso", 4.0), ("lwaist", 4.0))),
      TaskSpec("tinyfeet", bodies=(("shin", 0.5),)),
    )
  },
  # The tiny scenario for tests: envs.toy.TargetReachEnv, whose odd task ids flip the target.
  "toy": {t.name: t for t in (TaskSpec("target"), TaskSpec("flipped_target"))},
  # Continual World: a task is a Meta-World model (envs.cw), named by its spec's name alone.
  "cw": {name: TaskSpec(name) for name in cw.CW10},
}


@dataclasses.dataclass(frozen=True)
class Scenario:
  """A task sequence: ``tasks[i]`` is trained i-th; repeats are separate entries."""

  name: str
  env_name: str
  tasks: tuple[TaskSpec, ...]
  steps_per_task: int  # The paper's interaction budget per task.
  repeat_period: int  # Distinct tasks before the sequence repeats (the reference's `cycle`).


_SEQUENCES = {
  "halfcheetah/forgetting": ("hugefoot", "moon", "carry_stuff", "rainfall"),
  "halfcheetah/transfer": (
    "carry_stuff_hugegravity",
    "moon",
    "defective_module",
    "hugefoot_rainfall",
  ),
  "halfcheetah/robustness": ("normal", "inverted_actions", "normal", "inverted_actions"),
  "halfcheetah/compositionality": ("tinyfoot", "moon", "carry_stuff_hugegravity", "tinyfoot_moon"),
  "ant/forgetting": ("normal", "hugefoot", "rainfall", "moon"),
  "ant/transfer": (
    "disabled_first_diagonal",
    "disabled_second_diagonal",
    "disabled_forefeet",
    "disabled_backfeet",
  ),
  "ant/robustness": ("normal", "inverted_actions", "normal", "inverted_actions"),
  "ant/compositionality": (
    "disabled_hard1",
    "disabled_hard2",
    "disabled_forefeet",
    "disabled_backfeet",
  ),
  "humanoid/hard": ("normal", "moon", "carrystuff", "tinyfeet"),
  "toy/tiny": ("target", "flipped_target"),
  "cw/cw10": cw.CW10,
  **{f"cw/cw3-t{k}": triplet for k, triplet in cw.CW3_TRIPLETS.items()},
}
_PERIOD = {"halfcheetah/robustness": 2, "ant/robustness": 2}
# Repeats of the sequence and the paper's steps per task; Brax's own: 2 and 1 M.
_LENGTHS = {"humanoid": (1, 2_000_000), "toy": (2, 3_200), "cw": (1, 1_000_000)}


def scenario_names() -> tuple[str, ...]:
  return tuple(_SEQUENCES)


def get_scenario(name: str) -> Scenario:
  """The named scenario; an unknown name raises ValueError listing the choices."""
  if name not in _SEQUENCES:
    raise ValueError(f"Unknown scenario {name!r}; choices: {list(_SEQUENCES)}.")
  env_name = name.split("/")[0]
  repeats, steps = _LENGTHS.get(env_name, (2, 1_000_000))
  specs = tuple(TASKS[env_name][t] for t in _SEQUENCES[name]) * repeats
  # Continual World has no repeat period (the reference's `cycle` is set for Brax only).
  period = len(specs) if env_name == "cw" else _PERIOD.get(name, 4)
  return Scenario(name, env_name, specs, steps, period)


def make_sequence_env(
  env_name: str,
  tasks: tuple[TaskSpec, ...],
  backend: str = "mjx",
  episode_length: int = 1000,
  num_lanes: int = 1,
):
  """The ``TaskEnv`` whose task id ``i`` is ``tasks[i]``; for Continual World a tuple of them,
  one per task id (``envs.cw.make_cw_envs``, ``num_lanes`` envs stepped together, see
  ``cw.lanes_needed``; 200-step episodes). The toy and CW envs ignore ``backend`` and
  ``episode_length``; the others ignore ``num_lanes``."""
  if env_name == "toy":
    return TargetReachEnv(num_tasks=len(tasks))
  if env_name == "cw":
    return cw.make_cw_envs(tuple(t.name for t in tasks), num_lanes)
  return make_task_env(env_name, tasks, backend, episode_length)


def make_scenario_env(
  scenario: Scenario, backend: str = "mjx", episode_length: int = 1000, num_lanes: int = 1
):
  """``make_sequence_env`` of the scenario's tasks."""
  return make_sequence_env(scenario.env_name, scenario.tasks, backend, episode_length, num_lanes)


def get_task(env_name: str, task_name: str) -> TaskSpec:
  """A named task of ``env_name``; unknown names raise ValueError listing the choices."""
  if env_name not in TASKS:
    raise ValueError(f"Unknown env {env_name!r}; choices: {list(TASKS)}.")
  if task_name not in TASKS[env_name]:
    raise ValueError(
      f"Unknown task {task_name!r} for {env_name}; choices: {list(TASKS[env_name])}."
    )
  return TASKS[env_name][task_name]
