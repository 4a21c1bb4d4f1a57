"""A persistent compilation cache: a rerun of the same program loads it instead of compiling.

JAX's own cache (``jax_compilation_cache_dir``) stores each compiled XLA executable on disk,
keyed by the program, the compile options, the backend and the jax and jaxlib versions, so
a hit runs the exact executable a cold compile would produce and never changes a result. The
command line (``rewirejax``) and the experiment scripts turn it on at start; a Python user calls
``enable()`` before the first jitted call.

Where it lives: ``--compile-cache DIR`` on the command line, else the environment variable
``REWIREJAX_COMPILE_CACHE`` (a folder), else ``$XDG_CACHE_HOME/rewirejax/xla`` (by default
``~/.cache/rewirejax/xla``). The value ``off`` (or ``0``, ``false``, ``none``) turns it off.
"""

from __future__ import annotations

import os
import pathlib

import jax

ENV_VAR = "REWIREJAX_COMPILE_CACHE"
OFF = ("off", "0", "false", "none")


def default_dir() -> pathlib.Path:
  """``$XDG_CACHE_HOME/rewirejax/xla``, ``~/.cache/rewirejax/xla`` without it."""
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "rewirejax" / "xla"


def resolve(setting: str | None = None) -> pathlib.Path | None:
  """The cache folder for ``setting`` (a folder, ``"off"``, or None: the environment variable,
  then ``default_dir()``); None when it is off."""
  if setting is None:
    setting = os.environ.get(ENV_VAR)
  if setting is None or not setting.strip():
    return default_dir()
  if setting.strip().lower() in OFF:
    return None
  return pathlib.Path(setting).expanduser()


def enable(setting: str | None = None, min_compile_seconds: float = 1.0) -> pathlib.Path | None:
  """Turns the persistent cache on in ``resolve(setting)`` (or leaves it off) and returns the
  folder. Programs that compile in under ``min_compile_seconds`` are not stored (JAX's
  default, 1 s: storing them costs more than compiling them again)."""
  if min_compile_seconds < 0:
    raise ValueError(f"min_compile_seconds must be >= 0, got {min_compile_seconds}.")
  directory = resolve(setting)
  if directory is None:
    jax.config.update("jax_compilation_cache_dir", None)
    return None
  directory.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory
