"""Test setup: CPU only, 64-bit off, the persistent compilation cache to keep compiles cheap
(``rewirejax.compile_cache``: ``REWIREJAX_COMPILE_CACHE`` moves it or turns it off)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from rewirejax import compile_cache

compile_cache.enable(min_compile_seconds=0.5)
