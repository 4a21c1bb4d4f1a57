"""The persistent compilation cache: where it lives, how it is turned off, and that a warm run
(loading every program from it) gives the cold run's outputs exactly."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from rewirejax import compile_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A tiny two-task run on the toy env in a fresh process (so no program is in memory already),
# with the cache in argv[1]: its returns, its final state's checksum and the cache's hit and
# miss counts.
_RUN = """
import json, sys
import jax
events = []
jax.monitoring.register_event_listener(lambda event, **kwargs: events.append(event))
from rewirejax import compile_cache
compile_cache.enable(sys.argv[1], min_compile_seconds=0)
from rewirejax.envs.toy import TargetReachEnv
from rewirejax.methods import fine_tuning
from rewirejax.train import train_sequence
from tests.golden import state_checksum
from tests.test_train import SEQ
result = train_sequence(SEQ, TargetReachEnv(), fine_tuning(), tasks=[0, 1], seeds=[0, 1],
                        eval_every_chunks=1, progress=False)
print(json.dumps({
  "returns": result.returns.tolist(), "curves": result.curves.tolist(),
  "state": state_checksum(result.state.learner.params),
  "hits": events.count("/jax/compilation_cache/cache_hits"),
  "misses": events.count("/jax/compilation_cache/cache_misses"),
}))
"""


def _run(cache: pathlib.Path) -> dict:
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  done = subprocess.run(
    [sys.executable, "-c", _RUN, str(cache)], capture_output=True, text=True, env=env, cwd=ROOT
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_warm_run_loads_every_program_and_gives_the_cold_runs_outputs(tmp_path):
  cold = _run(tmp_path / "cache")
  assert cold["misses"] > 0 and any((tmp_path / "cache").iterdir())
  warm = _run(tmp_path / "cache")
  # (A cold run may hit already: two jitted functions can lower to the same program.)
  assert warm["misses"] == 0 and warm["hits"] == cold["hits"] + cold["misses"]
  assert (warm["returns"], warm["curves"], warm["state"]) == (
    cold["returns"],
    cold["curves"],
    cold["state"],
  )


def test_the_cache_folder_setting(monkeypatch, tmp_path):
  monkeypatch.delenv(compile_cache.ENV_VAR, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compile_cache.resolve() == tmp_path / "rewirejax" / "xla"
  monkeypatch.setenv(compile_cache.ENV_VAR, str(tmp_path / "elsewhere"))
  assert compile_cache.resolve() == tmp_path / "elsewhere"
  assert compile_cache.resolve(str(tmp_path / "flag")) == tmp_path / "flag"  # The flag wins.
  for off in ("off", "OFF", "0", "false", "none"):
    monkeypatch.setenv(compile_cache.ENV_VAR, off)
    assert compile_cache.resolve() is None
  assert compile_cache.resolve("off") is None


def test_a_negative_minimum_compile_time_is_refused():
  with pytest.raises(ValueError, match="min_compile_seconds must be >= 0"):
    compile_cache.enable("off", min_compile_seconds=-1)
