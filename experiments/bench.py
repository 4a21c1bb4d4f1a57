"""Benchmarks that print figures (never asserted in tests). Run: ``make bench``.

Sections:
  layers: a 256-wide Dense vs PermutedDense at batch 256, forward and forward+backward
    (targets: forward overhead <= 10 %, forward+backward <= 2x Dense).
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from rewirejax import layers


def time_call(fn: Callable[[], object], *, repeats: int = 7, min_seconds: float = 0.2) -> float:
  """Median seconds per call of a jitted ``fn`` (compiled and warmed up first)."""
  jax.block_until_ready(fn())
  calls = 1
  while True:  # Find a call count that runs for at least min_seconds.
    start = time.perf_counter()
    for _ in range(calls):
      out = fn()
    jax.block_until_ready(out)
    if time.perf_counter() - start >= min_seconds:
      break
    calls *= 2
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn()
    jax.block_until_ready(out)
    samples.append((time.perf_counter() - start) / calls)
  return float(np.median(samples))


def bench_layers(width: int = 256, batch: int = 256) -> dict[str, float]:
  """Dense vs PermutedDense (K = 1, tau = 1): forward and forward+backward, per call."""
  x = jax.random.normal(jax.random.key(0), (batch, width))
  cotangent = jax.random.normal(jax.random.key(1), (batch, width))
  results = {}
  for name, module in (("Dense", nn.Dense(width)), ("PermutedDense", layers.PermutedDense(width))):
    params = module.init(jax.random.key(2), x)
    # Random scores, so the gather really moves data (identity order would too, but be fair).
    if name == "PermutedDense":
      scores = jax.random.uniform(jax.random.key(3), (1, width))
      params = {"params": {**params["params"], "scores": scores}}
    forward = jax.jit(module.apply)

    def loss(params, x, module=module):
      return jnp.sum(module.apply(params, x) * cotangent)

    forward_backward = jax.jit(jax.grad(loss, argnums=(0, 1)))
    results[f"{name} forward"] = time_call(lambda f=forward, p=params: f(p, x))
    results[f"{name} forward+backward"] = time_call(lambda f=forward_backward, p=params: f(p, x))

  print(
    f"\n## Layer: width {width}, batch {batch} ({jax.devices()[0].platform}, "
    f"{platform.processor() or platform.machine()})"
  )
  print(f"{'':28}{'Dense (us)':>12}{'PermutedDense (us)':>20}{'ratio':>8}{'target':>9}")
  for part, target in (("forward", 1.10), ("forward+backward", 2.0)):
    dense, permuted = results[f"Dense {part}"], results[f"PermutedDense {part}"]
    print(
      f"{part:28}{dense * 1e6:>12.1f}{permuted * 1e6:>20.1f}{permuted / dense:>8.2f}"
      f"{'<= ' + format(target, '.2f'):>9}"
    )
  return results


SECTIONS = {"layers": bench_layers}


def main() -> None:
  parser = argparse.ArgumentParser(description="rewirejax benchmarks (figures, not tests).")
  parser.add_argument("--only", choices=sorted(SECTIONS), nargs="*", help="sections to run")
  args = parser.parse_args()
  print(f"jax {jax.__version__}, devices: {jax.devices()}")
  for name in args.only or SECTIONS:
    SECTIONS[name]()


if __name__ == "__main__":
  main()
