"""Typed, frozen configuration. Shapes, loop lengths and counts are static Python values."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np


@dataclasses.dataclass(frozen=True)
class SACConfig:
  """Soft actor-critic; defaults are the reference code's (implementation notes §4), except
  its two quirks at the end, which default to textbook SAC (the ``brax_sac_reference`` preset
  switches them on)."""

  batch_size: int = 256  # Transitions per gradient step.
  discount: float = 0.99  # gamma.
  polyak: float = 0.005  # Target-critic soft update rate.
  num_envs: int = 128  # Parallel training environments.
  updates_per_env_step: float = 0.5  # Gradient steps per environment transition.
  warmup_transitions: int = 12_800  # Collected before updates start, per task.
  # The warm-up's actions: "policy" (the reference's Brax setting: the current stochastic
  # policy) or "uniform" (uniform in [-1, 1]^|A|, its Continual World start_steps).
  warmup_actions: str = "policy"
  replay_capacity: int = 1_280_000  # Transitions; a new buffer per task.
  actor_lr: float = 3e-4  # Adam, actor (weights, scores, heads).
  critic_lr: float = 3e-4  # Adam, twin critic.
  alpha_lr: float = 3e-4  # Adam, log temperature.
  init_temperature: float = 2.0  # alpha at the start of every task.
  target_entropy_multiplier: float = 2.0  # target entropy = -m * act_dim.
  policy_update_delay: int = 2  # Critic steps per actor/temperature step.
  target_update_delay: int = 1  # Critic steps per target update.
  reward_scaling: float = 1.0  # Multiplies rewards in the critic target.
  hidden_sizes: tuple[int, ...] = (256, 256, 256)  # Actor and critic widths.
  truncation_is_terminal: bool = False  # Reference: True (no bootstrap at the time limit).
  # The tanh log-det in log pi: "exact" (SAC), or "reference": the reference code's
  # 2 log 2 - u - softplus(-2u), half the correction plus log 2 per action dimension.
  tanh_log_det: str = "exact"

  @property
  def updates_per_epoch(self) -> int:
    """Gradient steps after each vectorised environment step (num_envs transitions)."""
    return round(self.num_envs * self.updates_per_env_step)

  def validate(self) -> None:
    """Raises ValueError on inconsistent settings."""
    positive = (
      "batch_size",
      "num_envs",
      "replay_capacity",
      "policy_update_delay",
      "target_update_delay",
    )
    for name in positive:
      if getattr(self, name) < 1:
        raise ValueError(f"SACConfig.{name} must be >= 1, got {getattr(self, name)}.")
    if self.updates_per_env_step <= 0:
      raise ValueError("SACConfig.updates_per_env_step must be > 0.")
    if abs(self.updates_per_epoch - self.num_envs * self.updates_per_env_step) > 1e-9:
      raise ValueError(
        f"num_envs x updates_per_env_step = {self.num_envs * self.updates_per_env_step} "
        "must be a whole number of gradient steps per environment step."
      )
    if self.updates_per_epoch % self.policy_update_delay:
      raise ValueError(
        f"updates per environment step ({self.updates_per_epoch}) must be a multiple of "
        f"policy_update_delay ({self.policy_update_delay})."
      )
    if self.batch_size > self.replay_capacity:
      raise ValueError(
        f"batch_size ({self.batch_size}) is larger than the replay buffer ({self.replay_capacity})."
      )
    if self.warmup_transitions < self.batch_size:
      raise ValueError(
        f"warmup_transitions ({self.warmup_transitions}) must be >= batch_size "
        f"({self.batch_size}) so the first batch can be sampled."
      )
    if self.warmup_transitions > self.replay_capacity:
      raise ValueError("warmup_transitions must fit in the replay buffer.")
    if not 0.0 < self.discount <= 1.0 or not 0.0 < self.polyak <= 1.0:
      raise ValueError("discount and polyak must be in (0, 1].")
    if self.warmup_actions not in ("policy", "uniform"):
      raise ValueError(
        f"warmup_actions must be 'policy' or 'uniform', got {self.warmup_actions!r}."
      )
    if self.tanh_log_det not in ("exact", "reference"):
      raise ValueError(f"tanh_log_det must be 'exact' or 'reference', got {self.tanh_log_det!r}.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One continual run: environment, budget, SAC, and the host-side loop."""

  env_name: str = "halfcheetah"  # Environment (see rewirejax.envs).
  backend: str = "mjx"  # Brax pipeline: mjx, spring, generalized, positional.
  steps_per_task: int = 1_000_000  # Environment transitions per task (warm-up included).
  max_tasks: int = 8  # Preallocated task slots (heads, wirings).
  epochs_per_chunk: int = 50  # Vectorised env steps per jitted chunk (a host round trip).
  num_eval_envs: int = 512  # Deterministic evaluation: parallel episodes.
  num_eval_rollouts: int = 10  # Sequential evaluation rounds; episodes = envs x rollouts.
  sac: SACConfig = dataclasses.field(default_factory=SACConfig)  # Learner settings.

  @property
  def warmup_epochs(self) -> int:
    return -(-self.sac.warmup_transitions // self.sac.num_envs)

  @property
  def train_epochs(self) -> int:
    """Vectorised env steps with updates per task, after the warm-up."""
    return max(self.steps_per_task // self.sac.num_envs - self.warmup_epochs, 0)

  @property
  def num_chunks(self) -> int:
    return -(-self.train_epochs // self.epochs_per_chunk)

  def epochs_in_chunk(self, chunk: int) -> int:
    """Epochs chunk ``chunk`` runs: full chunks, then the remainder, so a task collects
    exactly ``steps_per_task`` transitions (up to rounding to whole vectorised steps)."""
    return min(self.epochs_per_chunk, self.train_epochs - chunk * self.epochs_per_chunk)

  def env_steps_after_chunk(self, chunk: int) -> int:
    """Transitions a task has collected when chunk ``chunk`` ends (warm-up included): the
    x-axis of a learning-curve point. The last chunk may be short (``epochs_in_chunk``)."""
    trained = min((chunk + 1) * self.epochs_per_chunk, self.train_epochs)
    return (self.warmup_epochs + trained) * self.sac.num_envs

  def curve_steps(self, eval_every_chunks: int, num_evals: int) -> np.ndarray:
    """[num_evals] env steps of the curve points taken every ``eval_every_chunks`` chunks."""
    chunks = eval_every_chunks * np.arange(1, num_evals + 1) - 1
    return np.array([self.env_steps_after_chunk(int(c)) for c in chunks], dtype=np.int64)

  def validate(self) -> None:
    self.sac.validate()
    if self.steps_per_task < 1:
      raise ValueError(f"steps_per_task must be >= 1, got {self.steps_per_task}.")
    if self.steps_per_task < self.sac.warmup_transitions + self.sac.num_envs:
      raise ValueError(
        f"steps_per_task ({self.steps_per_task}) leaves no training after the warm-up "
        f"({self.sac.warmup_transitions} transitions)."
      )
    if min(self.max_tasks, self.epochs_per_chunk, self.num_eval_envs, self.num_eval_rollouts) < 1:
      raise ValueError(
        "max_tasks, epochs_per_chunk, num_eval_envs and num_eval_rollouts must be >= 1."
      )


@dataclasses.dataclass(frozen=True)
class RewireConfig:
  """The rewiring method (SPEC §4). Defaults follow the SPEC (the paper's text); the reference
  code's per-scenario values are presets (implementation notes §9)."""

  # Float32 leaves of the method's state (``RewireCoefs``): ``rewirejax sweep`` grids them.
  TRACED: ClassVar[tuple[str, ...]] = ("distill_coef", "align_coef", "tau")
  num_modes: int = 3  # K wirings trained at once (multi-mode, Sec. 3.3).
  tau: float = 1.0  # SoftSort temperature of the scores (reference: 0.1 in most scenarios).
  mode_update: str = "all"  # "all": every mode's actor loss per step, vmapped; "sample": one.
  distill: str = "kl"  # "kl": KL(pi_k' || pi_k) (Eq. 6); "mse": the reference's squared error.
  distill_coef: float = 1e-5  # alpha, on a distillation loss summed over batch and actions.
  align: bool = True  # Adapters P', P'' (Eqs. 9-12); False: plain L2 with the same coefficient.
  align_coef: float = 1.0  # beta, on L_SP summed over the hidden layers' weights and biases.
  align_tau: float = 0.1  # tau2, SoftSort temperature of the adapters.
  # "norm": ||W - P'^T M P''||^2 (Eq. 11); "correlation": the reference's
  # ||W||^2 - 2 <P'^T M P'', W> (without ||P'^T M P''||^2: constant for hard permutations,
  # not for their straight-through gradient).
  align_loss: str = "norm"
  cache_wirings: bool = True  # One cached wiring per task (False: old tasks use the current one).
  rollback_if_worse: bool = True  # Restore the start of the task if no mode beats it.
  task_slots: int = 0  # 0: each task its own wiring and head; n: task t uses slot t % n.
  mode_per_env: bool = True  # Acting: each env its own random mode; False: one for all (ref.).
  gumbel_noise: float = 0.0  # Reference: Gumbel noise on the scores in the update (0 or 0.1).
  dropout: float = 0.0  # Reference: 0.1 on hidden pre-activations (acting and update).
  # The adapters' optimizer: "actor_adam", the actor's Adam (the reference's); "sgd", a
  # departure: plain SGD at ``adapter_lr``, steps proportional to the alignment gradient.
  adapter_optimizer: str = "actor_adam"
  adapter_lr: float = 1e-3  # Used by adapter_optimizer="sgd" only.

  def validate(self) -> None:
    if self.num_modes < 1:
      raise ValueError(f"num_modes must be >= 1, got {self.num_modes}.")
    if self.mode_update not in ("all", "sample"):
      raise ValueError(f"mode_update must be 'all' or 'sample', got {self.mode_update!r}.")
    if self.align_loss not in ("norm", "correlation"):
      raise ValueError(f"align_loss must be 'norm' or 'correlation', got {self.align_loss!r}.")
    if self.distill not in ("kl", "mse"):
      raise ValueError(f"distill must be 'kl' or 'mse', got {self.distill!r}.")
    if self.tau <= 0 or self.align_tau <= 0:
      raise ValueError("tau and align_tau must be > 0.")
    if min(self.distill_coef, self.align_coef, self.task_slots, self.gumbel_noise) < 0:
      raise ValueError("distill_coef, align_coef, task_slots and gumbel_noise must be >= 0.")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
    if self.adapter_optimizer not in ("actor_adam", "sgd"):
      raise ValueError(
        f"adapter_optimizer must be 'actor_adam' or 'sgd', got {self.adapter_optimizer!r}."
      )
    if self.adapter_lr < 0:
      raise ValueError(f"adapter_lr must be >= 0, got {self.adapter_lr}.")
