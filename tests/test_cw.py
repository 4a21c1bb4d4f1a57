"""Continual World on MJX (``rewirejax.envs.cw``): the env against mtcworldmjx's own, and two
Meta-World tasks inside the fused trainer, one program each.

MuJoCo Warp on CPU is slow (about 0.1 s a step at 2 envs) and compiles its kernels on first
use (``~/.cache/warp``), so these runs are tiny: 4-step episodes and 5 hand-settling steps at
each reset instead of 200 and 50 (the defaults are checked separately).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewirejax import train
from rewirejax.checkpoint import Checkpointer
from rewirejax.config import RunConfig, SACConfig
from rewirejax.envs import cw
from rewirejax.envs.scenarios import get_scenario, make_scenario_env
from rewirejax.methods import fine_tuning
from tests.test_task_envs import record_programs_built

SMALL = {"episode_length": 4, "hand_reset_steps": 5}
TASKS = ("push", "window-close")
CW_SAC = SACConfig(
  batch_size=8,
  num_envs=2,
  updates_per_env_step=0.5,
  warmup_transitions=8,
  replay_capacity=64,
  hidden_sizes=(16, 16),
  policy_update_delay=1,
  target_update_delay=1,
)
# 4 warm-up epochs, then 2 chunks of 4 epochs (one 4-step episode per env each).
CW_RUN = RunConfig(
  steps_per_task=24, max_tasks=2, epochs_per_chunk=4, num_eval_envs=2, num_eval_rollouts=1,
  sac=CW_SAC,
)  # fmt: skip


@pytest.fixture(scope="module")
def envs():
  return cw.make_cw_envs(TASKS, num_lanes=2, **SMALL)


def _rollout(reset, step, key, actions):
  """Observations [steps + 1, 39], rewards and success flags [steps] of one episode."""
  state = reset(key)
  obs, rewards, success = [state.obs], [], []
  for action in actions:
    state = step(state, action)
    obs.append(state.obs)
    rewards.append(state.reward)
    success.append(state.info["success"] if "success" in state.info else state.metrics["success"])
  return jnp.stack(obs), jnp.stack(rewards), jnp.stack(success)


def test_env_matches_mtcworldmjx_on_fixed_random_actions(envs):
  import MTCWorldMJX
  from MTCWorldMJX.envs.sawyer_xyz import SawyerXYZConfig

  config = SawyerXYZConfig(max_path_length=4, hand_reset_steps=5, solver_iterations=6,
                           ls_iterations=6)  # fmt: skip
  theirs = MTCWorldMJX.make("push-v3", config=config)
  ours, task = envs[0], jnp.int32(0)
  actions = jax.random.uniform(jax.random.key(7), (3, 4), minval=-1.0, maxval=1.0)
  key = jax.random.key(3)
  expected = jax.jit(lambda k, a: _rollout(theirs.reset, theirs.step, k, a))(key, actions)
  ours_rollout = lambda k, a: _rollout(  # noqa: E731
    lambda k: ours.reset(k, task), lambda s, a: ours.step(s, a, task), k, a
  )
  observed = jax.jit(ours_rollout)(key, actions)
  for name, x, y in zip(("observations", "rewards", "success"), observed, expected, strict=True):
    np.testing.assert_array_equal(x, y, err_msg=name)
  assert observed[0].shape == (4, 39) and np.all(np.isfinite(observed[0]))


def test_two_tasks_train_in_the_fused_chunk_one_program_each(envs, monkeypatch, tmp_path):
  built = record_programs_built(monkeypatch)
  result = train.train_sequence(CW_RUN, envs, fine_tuning(), [0, 1], eval_every_chunks=1,
                                progress=False, out_dir=tmp_path)  # fmt: skip
  assert [id(env) for env in built] == [id(envs[0]), id(envs[1])]
  assert result.returns.shape == (1, 2, 2) and result.curves.shape == (1, 2, 2)
  # R holds success rates over 2 evaluation episodes.
  assert np.all(np.isin(result.returns, [0.0, 0.5, 1.0])), result.returns
  assert result.state.replay.obs.shape[-1] == 39 and result.state.replay.action.shape[-1] == 4
  for chunk in result.chunk_metrics:  # Each chunk ends one 4-step episode in each env.
    assert chunk["episodes"] == 2 and np.isfinite(chunk["critic/loss"]), chunk
    assert np.isfinite(chunk["episode_return"])
  # The last checkpoint (a Meta-World state: its model has zero-size arrays) restores exactly.
  restored, _ = Checkpointer(tmp_path / "checkpoints").restore(result.state)
  chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(result.state))


def test_defaults_are_continual_worlds():
  scenario = get_scenario("cw/cw3-t6")  # stick-pull, peg-unplug-side, stick-pull.
  envs = make_scenario_env(scenario)
  assert envs[0] is envs[2] and envs[0] is not envs[1]  # A repeated task: one program.
  env = envs[0]
  assert (env.episode_length, env.hand_reset_steps, env.solver_iterations) == (200, 50, 6)
  assert env._env.config.max_path_length == 200
  assert (env.observation_size, env.action_size, env.num_tasks) == (39, 4, 3)


def test_bad_env_arguments_fail_in_one_line():
  with pytest.raises(ValueError, match="Unknown Meta-World task 'push-walls'"):
    cw.MetaWorldTaskEnv("push-walls", 1)
  with pytest.raises(ValueError, match="episode_length must be >= 1"):
    cw.MetaWorldTaskEnv("push", 1, episode_length=0)


def test_a_missing_extra_names_the_install_command(monkeypatch):
  monkeypatch.setitem(sys.modules, "MTCWorldMJX", None)  # `import MTCWorldMJX` now fails.
  with pytest.raises(cw.MissingExtraError) as error:
    cw.MetaWorldTaskEnv("push", 1)
  assert str(error.value) == cw.INSTALL_HINT and ".[cw]" in cw.INSTALL_HINT
  assert error.value.__cause__ is None and error.value.__suppress_context__


def test_cw_runs_need_whole_episodes_per_chunk(envs):
  with pytest.raises(ValueError, match="multiple of 4"):
    train.make_task_program(dataclasses.replace(CW_RUN, epochs_per_chunk=6), envs[0],
                            fine_tuning(), [0])  # fmt: skip


def test_the_command_line_names_the_missing_extra_in_one_line(monkeypatch, capsys):
  from rewirejax import cli

  monkeypatch.setitem(sys.modules, "MTCWorldMJX", None)
  args = ["train", "--preset", "brax", "--scenario", "cw/cw3-t1", "--no-progress"]
  assert cli.main(args) == 2
  assert capsys.readouterr().err == f"rewirejax: error: {cw.INSTALL_HINT}\n"


def test_warps_no_driver_warning_is_dropped_and_other_lines_kept(capfd):
  """The native library writes to file descriptor 2 directly, as this fake ``warp.init`` does."""

  class FakeWarp:
    @staticmethod
    def init():
      os.write(2, f"{cw.NO_DRIVER_WARNING} GPU execution will not be available.\n".encode())
      os.write(2, b"Warp CUDA error: something real\n")

  cw._init_warp_without_driver_warning.__wrapped__(FakeWarp)
  assert capfd.readouterr().err == "Warp CUDA error: something real\n"

  class FailingWarp:
    @staticmethod
    def init():
      os.write(2, b"Warp error: why it failed\n")
      raise RuntimeError("init failed")

  with pytest.raises(RuntimeError, match="init failed"):
    cw._init_warp_without_driver_warning.__wrapped__(FailingWarp)
  assert capfd.readouterr().err == "Warp error: why it failed\n"


def test_loading_the_extra_prints_nothing_on_a_machine_without_a_gpu():
  """The real Warp, in a fresh process (Warp initialises once): on a machine without an NVIDIA
  driver, as in CI, its native library would print ``cw.NO_DRIVER_WARNING`` here."""
  script = "from rewirejax.envs import cw; cw._mtcworldmjx(); import warp; warp.get_devices()"
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stderr == "" and proc.stdout == ""
