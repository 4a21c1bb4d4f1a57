"""Continual-learning methods as plug-ins of the one trainer (see base.Method).

``METHODS`` maps a name to a factory ``(run_config, **options) -> Method``; ``make_method``
looks one up (options: a method's settings, e.g. ``RewireConfig`` fields for ``rewire``, ``coef``
for ``ft_l2`` and ``ewc``, ``finetune_updates`` for ``packnet``; per-scenario values come from
``experiments/configs/brax.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from rewirejax.config import RewireConfig, RunConfig
from rewirejax.methods.base import Method, TrainerTools, fine_tuning
from rewirejax.methods.csp import make_csp
from rewirejax.methods.finetune import make_ft_n, make_sac_n
from rewirejax.methods.packnet import make_packnet
from rewirejax.methods.pnn import make_pnn
from rewirejax.methods.regularized import make_ewc, make_ft_l2
from rewirejax.methods.rewire import make_rewire

# The paper's Table 3 ladder: rewire without its parts (their options win over the caller's).
REWIRE_ABLATIONS = {
  "rewire_base": {"cache_wirings": False, "num_modes": 1, "align": False},
  "rewire_cache": {"num_modes": 1, "align": False},
  "rewire_cache_modes": {"align": False},
  "rewire_cache_align": {"num_modes": 1},
}

# Diagnostics beyond the paper, run by name: the update without the reference preset's noise
# on the scores (Gumbel) or its dropout, so it trains the network that acts.
REWIRE_VARIANTS = {"rewire_noiseless": {"gumbel_noise": 0.0, "dropout": 0.0}}


def _rewire(name: str, ablation: dict):
  def factory(cfg: RunConfig, **options) -> Method:
    return make_rewire(cfg.max_tasks, RewireConfig(**{**options, **ablation}), name=name)

  return factory


def _packnet(cfg: RunConfig, finetune_updates: int | None = None, **options) -> Method:
  """PackNet; by default it retrains for the paper's share of a task's updates (100 k of 500 k)."""
  if finetune_updates is None:
    finetune_updates = cfg.train_epochs * cfg.sac.updates_per_epoch // 5
  return make_packnet(cfg.max_tasks, finetune_updates=finetune_updates, **options)


METHODS: dict[str, Callable[..., Method]] = {
  "ft_1": lambda cfg: fine_tuning(),
  "ft_n": lambda cfg: make_ft_n(cfg.max_tasks),
  "sac_n": lambda cfg: make_sac_n(cfg.max_tasks),
  "ft_l2": lambda cfg, coef=1.0: make_ft_l2(coef),
  "ewc": lambda cfg, coef=1.0, fisher_samples=1024: make_ewc(coef, fisher_samples),
  "packnet": _packnet,
  "pnn": lambda cfg, **options: make_pnn(cfg.max_tasks, **options),
  "csp": lambda cfg, **options: make_csp(cfg.max_tasks, cfg.sac.num_envs, **options),
  "rewire": _rewire("rewire", {}),
  **{
    name: _rewire(name, ablation)
    for name, ablation in {**REWIRE_ABLATIONS, **REWIRE_VARIANTS}.items()
  },
}


def make_method(name: str, cfg: RunConfig, **options) -> Method:
  """The registered method ``name`` for ``cfg``; unknown names raise ValueError with choices."""
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; choices: {list(METHODS)}.")
  return METHODS[name](cfg, **options)


__all__ = [
  "METHODS",
  "REWIRE_ABLATIONS",
  "REWIRE_VARIANTS",
  "Method",
  "TrainerTools",
  "fine_tuning",
  "make_method",
]
