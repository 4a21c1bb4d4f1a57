"""The demo: SAC on one HalfCheetah task for a few minutes on 2 CPU cores."""

from rewirejax.config import RunConfig, SACConfig


def get_config() -> RunConfig:
  return RunConfig(
    env_name="halfcheetah",
    backend="spring",  # The fastest Brax pipeline on this CPU (measured: 8-13k env-steps/s).
    steps_per_task=48_000,
    max_tasks=1,
    epochs_per_chunk=125,  # 2,000 transitions and 1,000 updates per host round trip.
    num_eval_envs=16,
    num_eval_rollouts=1,  # One round of 16 episodes per learning-curve point keeps it quick.
    sac=SACConfig(
      num_envs=16,
      updates_per_env_step=0.5,  # The paper's ratio: 8 updates per step of the 16 envs.
      warmup_transitions=4_000,
      replay_capacity=100_000,
      batch_size=256,
      hidden_sizes=(256, 256),
      actor_lr=1e-3,
      critic_lr=1e-3,
      alpha_lr=1e-3,
      init_temperature=0.1,
      target_entropy_multiplier=1.0,
      policy_update_delay=1,
    ),
  )
