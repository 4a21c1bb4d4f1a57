"""Test setup: CPU only, 64-bit off, a persistent compilation cache to keep compiles cheap."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

_CACHE_DIR = os.environ.get(
  "REWIREJAX_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "rewirejax", "jax")
)
jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
