"""The command line: presets, and one-line errors that list the valid choices."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from rewirejax import cli
from rewirejax.config import RunConfig


def test_presets_load():
  assert {"brax_sac", "demo"} <= set(cli.preset_names())
  for name in cli.preset_names():
    cfg = cli.load_preset(name)
    assert isinstance(cfg, RunConfig)
    cfg.validate()


def test_reference_sac_preset_switches_on_the_quirks_only():
  paper, reference = cli.load_preset("brax_sac"), cli.load_preset("brax_sac_reference")
  assert (paper.sac.truncation_is_terminal, paper.sac.tanh_log_det) == (False, "exact")
  assert (reference.sac.truncation_is_terminal, reference.sac.tanh_log_det) == (True, "reference")
  assert (
    dataclasses.replace(
      reference,
      sac=dataclasses.replace(reference.sac, truncation_is_terminal=False, tanh_log_det="exact"),
    )
    == paper
  )


def _assert_one_line_error(capsys, message: str) -> None:
  err = capsys.readouterr().err.strip()
  assert err.startswith("rewirejax: error: ") and message in err and "\n" not in err


@pytest.mark.parametrize(
  ("argv", "message"),
  [
    (["--preset", "nope"], "Unknown preset 'nope'; choices: ["),
    (["--env", "walker"], "Unknown env 'walker'; choices: ["),
    (["--task", "mars"], "Unknown task 'mars' for halfcheetah; choices: ["),
    (["--scenario", "cheetah/x"], "Unknown scenario 'cheetah/x'; choices: ["),
    (["--steps", "-5"], "steps_per_task must be >= 1"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--env", "ant", "--scenario", "halfcheetah/forgetting"], "runs on halfcheetah"),
    (["--process-id", "1"], "need --distributed"),
    (["--num-envs", "0"], "SACConfig.num_envs must be >= 1, got 0."),
  ],
)
def test_bad_arguments_give_one_line_errors(argv, message, capsys):
  assert cli.main(["train", *argv]) == 2
  _assert_one_line_error(capsys, message)


def test_distributed_flags_reach_jax_distributed_initialize(monkeypatch):
  """The flags go to ``jax.distributed.initialize`` before the run starts (stopped there:
  the two-process run itself is tested through ``train_sequence`` in test_train.py)."""
  import jax

  calls = []

  def initialize(**kwargs):
    calls.append(kwargs)
    raise ValueError("stop here")

  monkeypatch.setattr(jax.distributed, "initialize", initialize)
  argv = ["--distributed", "--coordinator", "host0:1234", "--num-processes", "2"]
  assert cli.main(["train", *argv, "--process-id", "1"]) == 2
  assert calls == [{"coordinator_address": "host0:1234", "num_processes": 2, "process_id": 1}]


def test_unknown_backend_lists_choices(capsys):
  assert cli.main(["train", "--backend", "warp", "--steps", "100000"]) == 2
  assert "Unknown backend 'warp'; choices: [" in capsys.readouterr().err


def test_brax_preset_applies_the_scenario_sac_settings():
  args = cli._parser().parse_args(
    ["train", "--preset", "brax", "--scenario", "ant/forgetting", "--method", "sac_n"]
  )
  cfg, specs, _ = cli._configure(args)
  assert cfg.env_name == "ant" and len(specs) == 8 and cfg.max_tasks == 8
  sac = cfg.sac
  assert (sac.actor_lr, sac.critic_lr, sac.reward_scaling) == (1e-3, 1e-3, 10.0)
  assert (sac.policy_update_delay, sac.target_update_delay) == (2, 4)
  assert sac.target_entropy_multiplier == 1.0 and cfg.steps_per_task == 1_000_000
  args = cli._parser().parse_args(["train", "--preset", "brax", "--scenario", "humanoid/hard"])
  cfg, specs, _ = cli._configure(args)
  assert cfg.sac.reward_scaling == 0.1 and cfg.steps_per_task == 2_000_000 and len(specs) == 4


def test_unknown_method_lists_choices(capsys):
  assert cli.main(["train", "--method", "pnn2", "--steps", "100000"]) == 2
  assert "Unknown method 'pnn2'; choices: [" in capsys.readouterr().err


def test_sweep_on_the_tiny_scenario(tmp_path, capsys):
  argv = ["sweep", "--scenario", "toy/tiny", "--budget", "0.25", "--seeds", "2"]
  argv += ["--alpha", "0", "1e-3", "--out", str(tmp_path), "--no-progress"]
  assert cli.main(argv) == 0
  out = capsys.readouterr().out
  assert "alpha=0.001" in out and "alpha=0 " in out
  import json

  result = json.loads((tmp_path / "toy" / "tiny" / "rewire.json").read_text())
  assert len(result["points"]) == 2 and len(result["score"]) == 2 and len(result["score"][0]) == 2
  assert result["sac_settings"] == "paper" and result["rewire_preset"] == "paper"
  # Checkpointed: the same command resumes (here: from the end) to the same result; a sweep of
  # another grid is refused in this folder.
  assert cli.main(argv) == 0
  again = json.loads((tmp_path / "toy" / "tiny" / "rewire.json").read_text())
  assert again["returns"] == result["returns"]
  other = [a if a != "1e-3" else "1e-2" for a in argv]
  assert cli.main(other) == 2
  assert "holds a sweep of other settings" in capsys.readouterr().err


def test_sweep_normalises_by_the_reference_and_names_the_tasks_it_leaves_out(
  tmp_path, capsys, monkeypatch
):
  from rewirejax import references
  from rewirejax.envs.scenarios import get_scenario

  num_tasks = len(get_scenario("toy/tiny").tasks)
  seen = {}

  def fake_reference(directory, scenario, backend, budget, sac_settings):
    seen["sac_settings"] = sac_settings
    return {"final_returns": [-1.0] + [1.0] * (num_tasks - 1)}

  monkeypatch.setattr(references, "load_reference", fake_reference)
  argv = ["sweep", "--scenario", "toy/tiny", "--budget", "0.25", "--seeds", "1", "--alpha", "0"]
  assert cli.main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
  out = capsys.readouterr().out
  assert "SAC-N's return is not positive on tasks [0], left out" in out
  assert seen["sac_settings"] == "paper"
  import json

  result = json.loads((tmp_path / "toy" / "tiny" / "rewire.json").read_text())
  final = np.asarray(result["returns"], dtype=float)[0, 0, -1]  # [eval tasks], reference 1.
  np.testing.assert_allclose(result["score"][0][0], np.mean(final[1:]), rtol=1e-6)
  assert result["score_label"] == "performance (SAC-N = 1)*"


def test_sweep_unknown_sac_settings_list_the_choices(capsys):
  argv = ["sweep", "--scenario", "toy/tiny", "--alpha", "0", "--sac", "quick"]
  assert cli.main(argv) == 2
  assert "Unknown SAC settings 'quick'; choices: [" in capsys.readouterr().err


def test_sweep_needs_a_grid(capsys):
  assert cli.main(["sweep", "--scenario", "toy/tiny"]) == 2
  assert "give at least one of --alpha" in capsys.readouterr().err


def test_sweep_refuses_negative_coefficients_and_unknown_protocols(capsys):
  assert cli.main(["sweep", "--scenario", "toy/tiny", "--alpha", "-1"]) == 2
  assert "must be >= 0" in capsys.readouterr().err
  argv = ["sweep", "--scenario", "toy/tiny", "--coef", "1", "--protocol", "gpu"]
  assert cli.main(argv) == 2
  assert "Unknown protocol 'gpu'; choices: ['paper', 'cpu']" in capsys.readouterr().err


@pytest.mark.parametrize(
  ("argv", "message"),
  [
    (["--budget", "0"], "budget must be in (0, 1], got 0.0."),
    (["--num-envs", "0"], "num_envs must be >= 1, got 0."),
    (["--eval-envs", "0"], "num_eval_envs must be >= 1, got 0."),
    (["--seeds", "0"], "--seeds must be >= 1"),
  ],
)
def test_bad_sweep_settings_give_one_line_errors(argv, message, capsys, tmp_path):
  base_argv = ["sweep", "--scenario", "halfcheetah/forgetting", "--beta", "1", "--protocol"]
  assert cli.main([*base_argv, "cpu", "--out", str(tmp_path), *argv]) == 2
  _assert_one_line_error(capsys, message)


def test_a_non_finite_loss_is_one_line_and_exit_1_unless_debug(monkeypatch, capsys):
  def diverge(args):
    raise FloatingPointError("critic/loss became non-finite in task index 0, chunk 0")

  monkeypatch.setattr(cli, "train_command", diverge)
  assert cli.main(["train"]) == 1
  err = capsys.readouterr().err.strip()
  assert err == "rewirejax: error: critic/loss became non-finite in task index 0, chunk 0"
  with pytest.raises(FloatingPointError):
    cli.main(["--debug", "train"])


def test_importing_the_environments_prints_no_third_party_noise():
  """MJX's 'Failed to import warp' lines and brax's maintenance warning are dropped."""
  code = (
    "from rewirejax.envs.scenarios import get_scenario, make_scenario_env\n"
    "make_scenario_env(get_scenario('halfcheetah/forgetting'), backend='spring')\n"
  )
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert "warp" not in done.stdout + done.stderr
  assert "not actively being maintained" not in done.stderr
