"""Continual-learning methods as plug-ins of the one trainer (see base.Method).

``METHODS`` maps a name to a factory ``(run_config) -> Method``; ``make_method`` looks one up.
"""

from __future__ import annotations

from collections.abc import Callable

from rewirejax.config import RunConfig
from rewirejax.methods.base import Method, TrainerTools, fine_tuning
from rewirejax.methods.finetune import make_ft_n, make_sac_n

METHODS: dict[str, Callable[[RunConfig], Method]] = {
  "ft_1": lambda cfg: fine_tuning(),
  "ft_n": lambda cfg: make_ft_n(cfg.max_tasks),
  "sac_n": lambda cfg: make_sac_n(cfg.max_tasks),
}


def make_method(name: str, cfg: RunConfig) -> Method:
  """The registered method ``name`` for ``cfg``; unknown names raise ValueError with choices."""
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; choices: {list(METHODS)}.")
  return METHODS[name](cfg)


__all__ = ["METHODS", "Method", "TrainerTools", "fine_tuning", "make_method"]
