"""Frozen behaviour: a run's return matrix and a checksum of its final state, against values
committed in ``tests/golden_values.json``.

The redesign of the trainer's seam must not move a single bit, so the comparison is exact:
the returns as float32 values, the checksum a SHA-256 of every leaf's bytes (learner params
and optimiser states, the method's state) in tree order. A change that must move the numbers
(a new key scheme, say) rewrites the file in its own commit, which says why:

  REWIREJAX_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests -k golden

Exact means exact on one instruction set: XLA:CPU vectorises for the host's widest vector
instructions, and a different width sums in a different order (the HalfCheetah returns move by
about 0.3 % between an AVX-512 and an AVX2 machine). So the values are kept per instruction
set (``instruction_set``); on one without recorded values the checks are skipped, saying so.
Record a new one only from a commit whose values already pass on a recorded one. A change that
must move one run's values, made on a machine of one instruction set, records that run there
and drops its stale values on the others; there its check is skipped, saying so, until someone
records it on such a machine (the values of the other runs must still pass there).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import platform

import jax
import numpy as np
import pytest

VALUES = pathlib.Path(__file__).with_name("golden_values.json")
WRITE = os.environ.get("REWIREJAX_WRITE_GOLDEN") == "1"


def state_checksum(tree) -> str:
  """SHA-256 over the bytes of every leaf of ``tree`` (PRNG keys by their key data), with
  each leaf's path, dtype and shape, so a reordering or a cast also changes it."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype}:{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


@functools.cache
def instruction_set() -> str:
  """The host's architecture and widest vector extension XLA:CPU uses, e.g.
  ``x86_64-avx512f``."""
  cpuinfo = pathlib.Path("/proc/cpuinfo")
  flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
  widest = next((f for f in ("avx512f", "avx2", "avx") if f in flags), None)
  return platform.machine() + (f"-{widest}" if widest else "")


def _load() -> dict:
  return json.loads(VALUES.read_text()) if VALUES.exists() else {}


def check(name: str, result) -> None:
  """Asserts that run ``name`` (a ``SequenceResult``) gave the committed return matrix,
  learning curves, final-state checksum and policy parameter count (or, with
  ``REWIREJAX_WRITE_GOLDEN=1``, records them)."""
  state = result.state
  observed = {
    "returns": np.asarray(result.returns, np.float32).tolist(),
    "curves": np.asarray(result.curves, np.float32).tolist(),
    "state_sha256": state_checksum((state.learner, state.method_state)),
    "policy_params": None if result.policy_params is None else int(result.policy_params),
  }
  if WRITE:
    values = _load()
    values.setdefault(instruction_set(), {})[name] = observed
    values = {isa: dict(sorted(runs.items())) for isa, runs in sorted(values.items())}
    VALUES.write_text(json.dumps(values, indent=1) + "\n")
    return
  recorded = _load()
  if instruction_set() not in recorded:
    pytest.skip(
      f"no golden values for this CPU's instruction set ({instruction_set()}; recorded: "
      f"{sorted(recorded)}); exact values hold only where they were recorded, see tests/golden.py"
    )
  expected = recorded[instruction_set()].get(name)
  if expected is None:
    elsewhere = sorted(isa for isa, runs in recorded.items() if name in runs)
    assert elsewhere, f"no golden values for {name!r}; see tests/golden.py"
    pytest.skip(
      f"{name!r} is recorded on {elsewhere} only (its values were moved by a change made where "
      f"{instruction_set()} could not be recorded); see tests/golden.py"
    )
  for field in ("returns", "curves"):
    np.testing.assert_array_equal(
      np.asarray(observed[field], np.float32),
      np.asarray(expected[field], np.float32),
      err_msg=f"{name}: the {field} moved",
    )
  assert observed["state_sha256"] == expected["state_sha256"], f"{name}: the final state moved"
  assert observed["policy_params"] == expected["policy_params"], f"{name}: the model size moved"
