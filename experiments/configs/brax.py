"""The paper's Brax setup per scenario (implementation notes §4): SAC settings shared by every
method, the interaction budget, and the evaluation protocol, scaled by ``budget``.

``get_config(scenario, method, budget, backend, num_envs, num_eval_envs, sac_settings)``.
``budget`` is the
fraction of the paper's interaction budget (1 M steps a task, Humanoid 2 M): the warm-up shrinks
with it (never below one batch) and so does the chunk length; below the full budget the
evaluation uses ``SCALED_EVAL`` and fewer learning-curve points (the paper's 512 envs x 10
rollouts of 1000 steps would dwarf a small run on a CPU: ~10k eval env-steps/s here).
``num_envs``/``num_eval_envs`` override the training and evaluation env counts (the updates per
env step stay the SAC settings'). ``sac_settings`` names the SAC settings shared by every method:
the scenario's (``"paper"``), ``FAST_SAC``, which learn within a small budget, or ``CPU_SAC``
(the cpu protocol's, ``PROTOCOLS``). ``toy/tiny`` is the tests' scenario on the pure-JAX toy env.
The Continual World scenarios (``cw/*``) take ``CW_SAC`` and ``CW_EVAL``; no per-scenario
coefficients exist for them in the reference, so every method runs at its defaults (Rewire's
are SPEC §4's, its Brax ones).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from rewirejax.config import RewireConfig, RunConfig, SACConfig
from rewirejax.envs import cw
from rewirejax.envs.scenarios import get_scenario
from rewirejax.methods import (
  METHODS,
  CSPConfig,
  EWCConfig,
  FTL2Config,
  PackNetConfig,
  PNNConfig,
  method_entry,
)
from rewirejax.methods.pnn import PNN_WIDTH

# lr policy, lr q, reward scaling, policy update delay, target update delay, target multiplier.
_SAC_TABLE = {
  "halfcheetah/forgetting": (1e-3, 3e-4, 1.0, 2, 2, 2.0),
  "halfcheetah/transfer": (3e-4, 3e-4, 1.0, 4, 2, 1.0),
  "halfcheetah/robustness": (1e-3, 1e-3, 1.0, 4, 2, 2.0),
  "halfcheetah/compositionality": (3e-4, 3e-4, 10.0, 4, 4, 2.0),
  "ant/forgetting": (1e-3, 1e-3, 10.0, 2, 4, 1.0),
  "ant/transfer": (1e-3, 1e-3, 1.0, 2, 2, 1.0),
  "ant/robustness": (1e-3, 1e-3, 1.0, 2, 4, 2.0),
  "ant/compositionality": (3e-4, 3e-4, 10.0, 4, 4, 2.0),
  "humanoid/hard": (1e-3, 3e-4, 0.1, 1, 1, 2.0),
}
# Rewire per scenario (notes §9): softsort tau, Gumbel scale (0: dropout 0.1 instead), cycle,
# alpha (distillation), beta (alignment).
_REWIRE_TABLE = {
  "halfcheetah/forgetting": (1.0, 0.1, 4, 1e-5, 100.0),
  "halfcheetah/transfer": (0.1, 0.0, 4, 1e-5, 0.1),
  "halfcheetah/robustness": (0.1, 0.0, 2, 1e-5, 1.0),
  "halfcheetah/compositionality": (1.0, 0.1, 4, 1e-5, 10.0),
  "ant/forgetting": (0.1, 0.0, 4, 1e-5, 10.0),
  "ant/transfer": (0.1, 0.0, 4, 1e-5, 0.1),
  "ant/robustness": (0.1, 0.0, 2, 1e-5, 0.1),
  "ant/compositionality": (0.1, 0.0, 4, 1e-5, 1.0),
  "humanoid/hard": (0.1, 0.1, 4, 1e-6, 0.0),
}
# Baselines per scenario (notes §9): FT-L2 l2_coeff, EWC fisher_coeff, CSP Dirichlet and
# repeat_alpha.
_BASELINE_TABLE = {
  "halfcheetah/forgetting": (10_000.0, 0.01, "peaked", 100),
  "halfcheetah/transfer": (1.0, 1.0, "peaked", 20),
  "halfcheetah/robustness": (100.0, 0.01, "flat", 20),
  "halfcheetah/compositionality": (100.0, 1.0, "flat", 100),
  "ant/forgetting": (10_000.0, 0.01, "peaked", 100),
  "ant/transfer": (1.0, 10_000.0, "peaked", 100),
  "ant/robustness": (1.0, 100.0, "flat", 100),
  "ant/compositionality": (100.0, 0.01, "flat", 20),
  "humanoid/hard": (0.01, 0.01, "flat", 100),
}
# Continual World's SAC (notes §4 and its table's continual_world row), shared by every
# method. Departures: 128 parallel envs instead of 1 (the fused trainer's point), 1 update per
# transition as the reference; its first 1,000 uniformly random actions are the warm-up's
# 1,000 transitions (rounded up to whole steps of the envs), also uniformly random.
CW_SAC = {
  "actor_lr": 1e-3,
  "critic_lr": 1e-3,
  "alpha_lr": 1e-3,
  "reward_scaling": 1.0,
  "policy_update_delay": 1,
  "target_update_delay": 1,
  "target_entropy_multiplier": 2.0,
  "batch_size": 128,
  "init_temperature": 2.7,
  "replay_capacity": 1_000_000,
  "warmup_transitions": 1_000,
  "warmup_actions": "uniform",
  "updates_per_env_step": 1.0,
}
CW_EVAL = (128, 1)  # Episodes of the success-rate evaluation, at every budget.
CSP_ALPHA_CANDIDATES = 4096  # Critic-scored subspace points per subspace at the full budget.
PACKNET_FINETUNE_UPDATES = 100_000  # At the full budget; scaled with it.
PRESETS = ("paper", "reference")
# SAC settings for small budgets: the demo's (experiments/configs/demo.py), measured to take
# HalfCheetah from about -200 to 300 in 8 k steps and past 800 in 20 k. The paper's start every
# task at temperature 2.0 and are still near maximum entropy after 15 k steps (1.5 % of the
# budget), so no method learns there. The scenario's reward scaling is kept.
FAST_SAC = {
  "actor_lr": 1e-3,
  "critic_lr": 1e-3,
  "alpha_lr": 1e-3,
  "init_temperature": 0.1,
  "target_entropy_multiplier": 1.0,
  "policy_update_delay": 1,
  "target_update_delay": 1,
}
# The cpu protocol's SAC settings (``PROTOCOLS["cpu"]``): FAST_SAC with 3 x 64 networks (the
# actor and both critics; the paper's 0.5 updates per transition) and batches of 128 (the
# update's cost is about proportional to the batch at this width), chosen by measurement so
# that SAC from scratch levels off within a task and a method's 8 tasks x 3 seeds take about
# 30 min on 2 CPU cores (docs: "The cpu protocol").
CPU_SAC = {**FAST_SAC, "hidden_sizes": (64, 64, 64), "batch_size": 128}
SAC_SETTINGS = {"paper": {}, "fast": FAST_SAC, "cpu": CPU_SAC}
FULL_EVAL = (512, 10)  # Envs x sequential rollouts, the reference's protocol.
SCALED_EVAL = (16, 1)  # Below the full budget.
CURVE_POINTS = {True: 10, False: 5}  # Evaluations of the task in training, full budget or not.
# SAC settings whose tasks are cut into exactly this many chunks, each ending at a curve point
# (so the last point is the task's end: the cpu protocol's levelling-off check needs it).
CHUNK_PER_CURVE_POINT = {"cpu": 5}


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Settings shared by every method of a comparison: ``make reproduce-brax PROTOCOL=<name>``
  and ``rewirejax sweep --protocol <name>`` take them as their defaults."""

  budget: float  # Fraction of the paper's steps per task (1 M; Humanoid 2 M).
  backend: str  # Brax pipeline.
  num_envs: int | None  # Training envs (None: the paper's 128).
  eval_envs: int | None  # Evaluation envs (None: 512 x 10 rollouts at the full budget, else 16).
  sac: str  # A SAC_SETTINGS name.
  preset: str  # Rewire settings: a PRESETS name.
  seeds: int  # Seeds vmapped in one job.

  def run_config(self, scenario: str, method: str = "ft_1") -> RunConfig:
    """``get_config`` of ``method`` on ``scenario`` at this protocol's settings."""
    return get_config(
      scenario, method, self.budget, self.backend, self.num_envs, self.eval_envs, self.sac
    )


PROTOCOLS = {
  "paper": Protocol(
    budget=1.0, backend="mjx", num_envs=None, eval_envs=None, sac="paper", preset="paper", seeds=10
  ),
  # 150 k steps a task (15 % of the paper's).
  "cpu": Protocol(
    budget=0.15, backend="spring", num_envs=16, eval_envs=16, sac="cpu", preset="paper", seeds=3
  ),
}


def get_config(
  scenario: str = "halfcheetah/forgetting",
  method: str = "ft_1",
  budget: float = 1.0,
  backend: str = "mjx",
  num_envs: int | None = None,
  num_eval_envs: int | None = None,
  sac_settings: str = "paper",
) -> RunConfig:
  """The run config of ``method`` on ``scenario`` at ``budget`` x the paper's steps, with the
  paper's SAC settings for the scenario or (``sac_settings="fast"``) ``FAST_SAC``."""
  del method  # The SAC settings are shared by all methods (the reference used the same files).
  spec = get_scenario(scenario)
  if not 0.0 < budget <= 1.0:
    raise ValueError(f"budget must be in (0, 1], got {budget}.")
  if sac_settings not in SAC_SETTINGS:
    raise ValueError(f"Unknown SAC settings {sac_settings!r}; choices: {list(SAC_SETTINGS)}.")
  for name, count in (("num_envs", num_envs), ("num_eval_envs", num_eval_envs)):
    if count is not None and count < 1:
      raise ValueError(f"{name} must be >= 1, got {count}.")
  if spec.env_name == "toy":
    sac = SACConfig(
      batch_size=64,
      num_envs=8,
      warmup_transitions=128,
      replay_capacity=5_000,
      hidden_sizes=(32, 32),
      actor_lr=1e-3,
      critic_lr=1e-3,
      alpha_lr=1e-3,
      init_temperature=0.1,
      discount=0.9,
      target_entropy_multiplier=1.0,
      policy_update_delay=1,
    )
    eval_envs, eval_rollouts = 16, 1
  elif spec.env_name == "cw":
    sac = dataclasses.replace(SACConfig(**CW_SAC), **SAC_SETTINGS[sac_settings])
    eval_envs, eval_rollouts = CW_EVAL
  else:
    lr_policy, lr_q, reward_scaling, policy_delay, target_delay, entropy = _SAC_TABLE[scenario]
    sac = SACConfig(
      actor_lr=lr_policy,
      critic_lr=lr_q,
      reward_scaling=reward_scaling,
      policy_update_delay=policy_delay,
      target_update_delay=target_delay,
      target_entropy_multiplier=entropy,
    )
    sac = dataclasses.replace(sac, **SAC_SETTINGS[sac_settings])
    eval_envs, eval_rollouts = FULL_EVAL if budget == 1.0 else SCALED_EVAL
  if num_envs is not None:
    sac = dataclasses.replace(sac, num_envs=num_envs)
  eval_envs = eval_envs if num_eval_envs is None else num_eval_envs
  steps = max(round(budget * spec.steps_per_task), 1)
  warmup = round_up(max(budget * sac.warmup_transitions, sac.batch_size), sac.num_envs)
  sac = dataclasses.replace(
    sac,
    warmup_transitions=min(warmup, sac.warmup_transitions),
    # A task never collects more than its budget, and the buffer is new per task: a larger
    # one would only cost memory and checkpoint time (1.28 M transitions are ~0.2 GiB a seed).
    replay_capacity=min(sac.replay_capacity, round_up(steps, sac.num_envs)),
  )
  cfg = RunConfig(
    env_name=spec.env_name,
    backend=cw.BACKEND if spec.env_name == "cw" else backend,
    steps_per_task=steps,
    max_tasks=len(spec.tasks),
    num_eval_envs=eval_envs,
    num_eval_rollouts=eval_rollouts,
    sac=sac,
  )
  train_epochs = max(cfg.train_epochs, 1)
  if sac_settings in CHUNK_PER_CURVE_POINT:
    chunk = math.ceil(train_epochs / CHUNK_PER_CURVE_POINT[sac_settings])
  else:
    chunk = min(100, math.ceil(train_epochs / CURVE_POINTS[budget == 1.0]))
  if spec.env_name == "cw":  # Whole 200-step episodes a chunk (synchronous resets).
    chunk = round_up(chunk, cw.EPISODE_LENGTH)
  return dataclasses.replace(cfg, epochs_per_chunk=chunk)


def eval_every_chunks(cfg: RunConfig, budget: float, sac_settings: str = "paper") -> int:
  """Chunks between learning-curve evaluations: about ``CURVE_POINTS`` per task (every chunk
  for ``CHUNK_PER_CURVE_POINT`` settings)."""
  if sac_settings in CHUNK_PER_CURVE_POINT:
    return 1
  return max(cfg.num_chunks // CURVE_POINTS[budget == 1.0], 1)


def round_up(x: float, multiple: int) -> int:
  return int(math.ceil(x / multiple) * multiple)


def _paper_options(scenario: str) -> dict[str, Any]:
  """The reference's per-scenario options of every method that has them (notes §9), typed:
  FT-L2's and EWC's coefficients, CSP's Dirichlet and ``repeat_alpha``, Rewire's alpha and beta
  (for Rewire and each of its ablations and variants)."""
  l2_coef, fisher_coef, distribution, repeat_alpha = _BASELINE_TABLE[scenario]
  rewire = RewireConfig(
    distill_coef=_REWIRE_TABLE[scenario][3], align_coef=_REWIRE_TABLE[scenario][4]
  )
  return {
    "ft_l2": FTL2Config(coef=l2_coef),
    "ewc": EWCConfig(coef=fisher_coef),
    "csp": CSPConfig(distribution=distribution, repeat_alpha=repeat_alpha),
    **{name: rewire for name, entry in METHODS.items() if entry.options is RewireConfig},
  }


def _reference_rewire(scenario: str) -> RewireConfig:
  """The reference code's Rewire settings (notes §9): its tau, one random mode per update and one
  acting mode for all envs, squared-error distillation, ``cycle`` task slots, the correlation
  form of the alignment loss, Gumbel noise on the scores in the update or, where its scale is
  0, dropout 0.1."""
  tau, gumbel, cycle, alpha, beta = _REWIRE_TABLE[scenario]
  return RewireConfig(
    distill_coef=alpha,
    align_coef=beta,
    tau=tau,
    task_slots=cycle,
    distill="mse",
    mode_update="sample",
    align_loss="correlation",
    mode_per_env=False,
    gumbel_noise=gumbel,
    dropout=0.0 if gumbel > 0 else 0.1,
  )


# The per-scenario options: {scenario: {method: options}} (the toy scenario uses the defaults).
PAPER_OPTIONS = {scenario: _paper_options(scenario) for scenario in _BASELINE_TABLE}
REFERENCE_REWIRE = {scenario: _reference_rewire(scenario) for scenario in _REWIRE_TABLE}


def _at_budget(options, budget: float, sac_settings: str):
  """Options that are shares of a task's work or of the network, at this budget and width:
  PackNet retrains for 100 k updates x ``budget``, CSP scores 4096 x ``budget`` (at least 32)
  points per subspace, PNN's columns keep the paper's share of the width (96 of 256)."""
  if isinstance(options, PackNetConfig):
    return dataclasses.replace(
      options, finetune_updates=math.ceil(PACKNET_FINETUNE_UPDATES * budget)
    )
  if isinstance(options, CSPConfig):
    candidates = max(math.ceil(CSP_ALPHA_CANDIDATES * budget), 32)
    return dataclasses.replace(options, alpha_candidates=candidates)
  if isinstance(options, PNNConfig):
    width = SAC_SETTINGS[sac_settings].get("hidden_sizes", (256,))[0]
    return dataclasses.replace(options, width=max(round(PNN_WIDTH * width / 256), 1))
  return options


def method_config(
  scenario: str,
  method: str,
  preset: str = "paper",
  budget: float = 1.0,
  sac_settings: str = "paper",
):
  """A method's typed options on ``scenario`` (``make_method(method, cfg, options=...)``).

  ``PAPER_OPTIONS`` holds the reference's per-scenario values; ``_at_budget`` scales the
  options that are shares of a task's work or width. Rewire's ``preset``: ``"paper"`` follows
  the paper's text and SPEC §4's defaults (tau 1, all K modes per update, KL distillation, a
  wiring and head per task) with the reference's alpha and beta; ``"reference"`` mirrors the
  reference code (``REFERENCE_REWIRE``).
  """
  if preset not in PRESETS:
    raise ValueError(f"Unknown preset {preset!r}; choices: {list(PRESETS)}.")
  options_class = method_entry(method).options
  if scenario not in PAPER_OPTIONS:  # The toy: every default.
    return options_class()
  options = PAPER_OPTIONS[scenario].get(method, options_class())
  if preset == "reference" and options_class is RewireConfig:
    options = REFERENCE_REWIRE[scenario]
  return _at_budget(options, budget, sac_settings)


def method_options(
  scenario: str,
  method: str,
  preset: str = "paper",
  budget: float = 1.0,
  sac_settings: str = "paper",
) -> dict:
  """``method_config`` as the values that differ from the options' defaults
  (``make_method(method, cfg, **options)``; what result files record)."""
  options = method_config(scenario, method, preset, budget, sac_settings)
  default = type(options)()
  return {
    f.name: getattr(options, f.name)
    for f in dataclasses.fields(options)
    if getattr(options, f.name) != getattr(default, f.name)
  }
