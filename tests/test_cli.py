"""The command line: presets, and one-line errors that list the valid choices."""

import pytest

from rewirejax import cli
from rewirejax.config import RunConfig


def test_presets_load():
  assert {"brax_sac", "demo"} <= set(cli.preset_names())
  for name in cli.preset_names():
    cfg = cli.load_preset(name)
    assert isinstance(cfg, RunConfig)
    cfg.validate()


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
  ],
)
def test_bad_arguments_give_one_line_errors(argv, message, capsys):
  assert cli.main(["train", *argv]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("rewirejax: error: ") and message in err and "\n" not in err


def test_unknown_backend_lists_choices(capsys):
  assert cli.main(["train", "--backend", "warp", "--steps", "100000"]) == 2
  assert "Unknown backend 'warp'; choices: [" in capsys.readouterr().err
