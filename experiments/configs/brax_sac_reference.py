"""``brax_sac`` with the reference code's two SAC quirks switched on as well
(docs/reference-departures.md, "SAC"): no bootstrap at the 1000-step time limit, and its
misparenthesised tanh log-det.
For a run that copies the reference's learner exactly, corrections included."""

import dataclasses

from rewirejax.cli import load_preset
from rewirejax.config import RunConfig


def get_config() -> RunConfig:
  cfg = load_preset("brax_sac")
  quirks = dataclasses.replace(cfg.sac, truncation_is_terminal=True, tanh_log_det="reference")
  return dataclasses.replace(cfg, sac=quirks)
