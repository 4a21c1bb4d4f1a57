"""``brax_sac`` with the reference code's two SAC quirks switched on as well (README,
"Training"): no bootstrap at the 1000-step time limit, and its misparenthesised tanh log-det.
For a run that copies the reference's learner exactly, corrections included."""

import dataclasses
import importlib.util
import pathlib

from rewirejax.config import RunConfig

_spec = importlib.util.spec_from_file_location(
  "rewirejax_preset_brax_sac", pathlib.Path(__file__).with_name("brax_sac.py")
)
_brax_sac = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_brax_sac)


def get_config() -> RunConfig:
  cfg = _brax_sac.get_config()
  quirks = dataclasses.replace(cfg.sac, truncation_is_terminal=True, tanh_log_det="reference")
  return dataclasses.replace(cfg, sac=quirks)
