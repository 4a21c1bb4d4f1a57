"""SAC with the reference code's defaults (implementation notes §4) on HalfCheetah, MJX."""

from rewirejax.config import RunConfig, SACConfig


def get_config() -> RunConfig:
  return RunConfig(
    env_name="halfcheetah",
    backend="mjx",
    steps_per_task=1_000_000,  # The paper's budget per task.
    max_tasks=8,
    epochs_per_chunk=100,  # 12,800 transitions and 6,400 updates per host round trip.
    num_eval_envs=512,
    sac=SACConfig(),  # Batch 256, 128 envs, 0.5 updates per step, warm-up 12,800, ...
  )
