"""Task environments: Brax locomotion tasks whose physics are picked by a traced task id."""

from rewirejax.envs.tasks import (
  ALL_ACTUATORS,
  BACKENDS,
  ENV_NAMES,
  BraxTaskEnv,
  TaskParams,
  TaskSpec,
  actuator_joint_names,
  apply_task,
  body_names,
  make_task_env,
  obs_mask,
  resolve_tasks,
)

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
