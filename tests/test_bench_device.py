"""``make bench-device`` at toy sizes on CPU (``--tiny``): it runs end to end and writes its JSON
and table with every field a device run reports, so it cannot rot between GPU sessions."""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import bench_device  # noqa: E402


def test_tiny_device_benchmark_writes_its_json_and_table(tmp_path):
  assert bench_device.main(["--tiny", "--out", str(tmp_path)]) == 0
  result = json.loads((tmp_path / "bench_device_tiny.json").read_text())
  expected = [c.label for c in bench_device.cases_in_order(bench_device.TINY)]
  assert [r["label"] for r in result["cases"]] == expected and result["skipped"] == []
  for row in result["cases"]:
    assert row["env_steps_per_s"] > 0 and row["compile_s"] > 0 and row["finite_losses"]
    assert {"gib_in_use", "peak_gib_in_use"} <= set(row)  # None on CPU.
  learning = result["learning"]
  assert len(learning["return_after_warmup"]) == len(learning["return_at_end"]) == 2
  table = (tmp_path / "bench_device_tiny.md").read_text()
  assert table.count("\n| toy |") == len(expected) and "Learning check" in table


def test_cases_stop_at_the_time_budget(tmp_path):
  """With no time left, no case starts: each is listed as skipped, and so is the check."""
  assert bench_device.main(["--tiny", "--out", str(tmp_path), "--max-seconds", "1e-9"]) == 0
  result = json.loads((tmp_path / "bench_device_tiny.json").read_text())
  assert result["cases"] == [] and result["learning"] is None
  labels = [c.label for c in bench_device.cases_in_order(bench_device.TINY)]
  assert result["skipped"] == [*labels, "the learning check"]
