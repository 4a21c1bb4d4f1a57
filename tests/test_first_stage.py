"""`experiments/first_stage.py` (Fig. 5a) end to end on the toy scenario: curves, summary, table,
plot; thresholds that no seed reaches; a folder of other settings is refused."""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import first_stage


def test_first_stage_on_the_toy(tmp_path, capsys):
  argv = ["--scenario", "toy/tiny", "--seeds", "2", "--curve-points", "4", "--out", str(tmp_path)]
  argv += ["--variants", "ft", "rewire_k1", "--no-progress"]
  assert first_stage.main(argv) == 0
  out = tmp_path / "cpu" / "toy" / "tiny" / "first_stage"
  ft = json.loads((out / "ft.json").read_text())
  assert np.asarray(ft["curves"]).shape == (2, 4) and ft["protocol"]["sac"] == "cpu"
  assert ft["curve_steps"][-1] == ft["config"]["steps_per_task"]
  summary = json.loads((out / "first_stage.json").read_text())
  assert set(summary) == {"protocol", "ft", "rewire_k1"}
  # The toy's returns stay below 10, so no threshold is reached: no ratio, no crash.
  reach = summary["rewire_k1"]["steps_to"]["500"]
  assert (reach["reached"], reach["median"], reach["ft_over_this"]) == (0, None, None)
  table = (out / "first_stage.md").read_text()
  assert "rewiring alone (K = 1)" in table and "not reached by half (0/2)" in table
  assert (out / "first_stage.png").stat().st_size > 1000
  # Options spelled out at their defaults are the same options: the finished run is kept.
  saved = tmp_path / "cpu" / "toy" / "tiny" / "first_stage" / "rewire_k1" / "settings.json"
  settings = json.loads(saved.read_text())
  settings["method_options"]["rollback_if_worse"] = True
  saved.write_text(json.dumps(settings))
  assert first_stage.main(argv) == 0
  # Another seed count in the same folder is refused, not mixed in.
  assert first_stage.main([*argv[:2], "--seeds", "3", *argv[4:]]) == 2
  assert "other settings" in capsys.readouterr().err
