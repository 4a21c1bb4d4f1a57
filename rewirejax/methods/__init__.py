"""Continual-learning methods as plug-ins of the one trainer (see base.Method).

``METHODS`` maps a name to a ``MethodEntry``: the method's typed, frozen options
(``RewireConfig``, ``FTL2Config``, ``EWCConfig``, ``PackNetConfig``, ``PNNConfig``,
``CSPConfig``, or ``NoOptions``) and its factory ``(run_config, options) -> Method``.
``make_method(name, cfg, **values)`` builds the options from ``values`` (or takes
``options=``), checks them and calls the factory; per-scenario values come from
``experiments/configs/brax.py``. An options class's ``TRACED`` fields are float32 leaves of the
method's state, so ``rewirejax sweep`` grids them in one job.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from rewirejax.config import RewireConfig, RunConfig
from rewirejax.methods.base import Method, NoOptions, TaskContext, fine_tuning
from rewirejax.methods.csp import CSPConfig, make_csp
from rewirejax.methods.finetune import make_ft_n, make_sac_n
from rewirejax.methods.packnet import PackNetConfig, make_packnet
from rewirejax.methods.pnn import PNNConfig, make_pnn
from rewirejax.methods.regularized import EWCConfig, FTL2Config, make_ewc, make_ft_l2
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


class MethodEntry(NamedTuple):
  """A registered method: its options class and its factory ``(run_config, options)``."""

  options: type
  make: Callable[[RunConfig, Any], Method]


def _ft_1(cfg: RunConfig, options: NoOptions) -> Method:
  del cfg, options
  return fine_tuning()


def _rewire_variant(name: str, overrides: dict, cfg: RunConfig, options: RewireConfig) -> Method:
  return make_rewire(cfg, dataclasses.replace(options, **overrides), name=name)


METHODS: dict[str, MethodEntry] = {
  "ft_1": MethodEntry(NoOptions, _ft_1),
  "ft_n": MethodEntry(NoOptions, make_ft_n),
  "sac_n": MethodEntry(NoOptions, make_sac_n),
  "ft_l2": MethodEntry(FTL2Config, make_ft_l2),
  "ewc": MethodEntry(EWCConfig, make_ewc),
  "packnet": MethodEntry(PackNetConfig, make_packnet),
  "pnn": MethodEntry(PNNConfig, make_pnn),
  "csp": MethodEntry(CSPConfig, make_csp),
  "rewire": MethodEntry(RewireConfig, make_rewire),
  **{
    name: MethodEntry(RewireConfig, functools.partial(_rewire_variant, name, overrides))
    for name, overrides in {**REWIRE_ABLATIONS, **REWIRE_VARIANTS}.items()
  },
}


def method_entry(name: str) -> MethodEntry:
  """The registered ``name``; unknown names raise ValueError with the choices."""
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; choices: {list(METHODS)}.")
  return METHODS[name]


def build_options(name: str, **values) -> Any:
  """``name``'s options class built from ``values``, checked; an unknown field raises a
  one-line ValueError naming the valid ones."""
  options_class = method_entry(name).options
  fields = [f.name for f in dataclasses.fields(options_class)]
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise ValueError(f"{name} has no options {unknown}; valid: {fields}.")
  options = options_class(**values)
  options.validate()
  return options


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
  """A registered method and option values from ``name+field=value+...``, e.g.
  ``rewire+distill=mse``: a run of ``name`` with those options replacing its preset's,
  written under the spec's own name (a diagnostic beside the method's row, never a
  registered method). Each value is read as its field's default's type.

  Raises:
    ValueError: an unknown method or field, a part without ``=``, a value not of the
      field's type, or one its options refuse (``validate``), before any run is made.
  """
  name, *parts = spec.split("+")
  defaults = method_entry(name).options()
  fields = [f.name for f in dataclasses.fields(defaults)]
  values: dict[str, Any] = {}
  for part in parts:
    field, sep, text = part.partition("=")
    if not sep or field not in fields:
      raise ValueError(f"{spec!r}: {part!r} is not field=value of {name}'s options {fields}.")
    values[field] = _read_value(spec, field, text, getattr(defaults, field))
  try:
    build_options(name, **values)
  except ValueError as refused:
    raise ValueError(f"{spec!r}: {refused}") from None
  return name, values


def _read_value(spec: str, field: str, text: str, default: Any) -> Any:
  if isinstance(default, bool):
    if text not in ("true", "false"):
      raise ValueError(f"{spec!r}: {field} takes true or false, got {text!r}.")
    return text == "true"
  if not isinstance(default, (int, float, str)):
    raise ValueError(f"{spec!r}: {field} cannot be set in a method spec.")
  kind = {int: "an integer", float: "a number", str: "a string"}[type(default)]
  try:
    return type(default)(text)
  except ValueError:
    raise ValueError(f"{spec!r}: {field} takes {kind}, got {text!r}.") from None


def same_options(name: str, saved: dict, values: dict) -> bool:
  """Whether two option dicts of method ``name`` (e.g. one read back from a result file) give
  the same options: compared resolved, so a value spelled out at its default equals one left
  out."""
  try:
    return build_options(name, **saved) == build_options(name, **values)
  except (ValueError, TypeError):  # An unknown method or an option it no longer has.
    return saved == values


def make_method(name: str, cfg: RunConfig, options: Any = None, **values) -> Method:
  """The registered method ``name`` for ``cfg``, with ``options`` (an instance of its options
  class) or the options built from ``values``."""
  entry = method_entry(name)
  if options is None:
    options = build_options(name, **values)
  elif values:
    raise ValueError("give make_method either options or option values, not both.")
  elif not isinstance(options, entry.options):
    raise ValueError(f"{name} takes {entry.options.__name__}, got {type(options).__name__}.")
  else:
    options.validate()
  return entry.make(cfg, options)


__all__ = [
  "METHODS",
  "REWIRE_ABLATIONS",
  "REWIRE_VARIANTS",
  "CSPConfig",
  "EWCConfig",
  "FTL2Config",
  "Method",
  "MethodEntry",
  "NoOptions",
  "PNNConfig",
  "PackNetConfig",
  "RewireConfig",
  "TaskContext",
  "build_options",
  "fine_tuning",
  "make_method",
  "method_entry",
  "parse_method_spec",
  "same_options",
]
