"""`make reproduce-brax` on the tiny scenario, end to end: FT-1 and SAC-N, the JSON files, the
SAC-N reference, the table and the plots; finished pairs are kept; the report command rebuilds
everything from the JSON; a resumed sequence equals an uninterrupted one."""

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import reproduce_brax
from configs import brax as brax_configs

from rewirejax import cli, metrics, report
from rewirejax import references as refs
from rewirejax.envs.scenarios import get_scenario, make_scenario_env
from rewirejax.methods import make_method
from rewirejax.train import train_sequence

BUDGET = 0.5  # 1,600 steps a task on the toy env.


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
  root = tmp_path_factory.mktemp("reproduce")
  out, references = root / "results", root / "references"
  argv = ["--scenarios", "toy/tiny", "--methods", "ft_1", "sac_n", "rewire", "rewire_base"]
  argv += ["--seeds", "2"]
  argv += ["--budget", str(BUDGET), "--out", str(out), "--references", str(references)]
  argv += ["--no-progress"]
  assert reproduce_brax.main(argv) == 0
  return argv, out, references


def test_writes_results_reference_table_and_plots(reproduced):
  _, out, references = reproduced
  scenario_dir = out / "toy" / "tiny"
  results = {m: json.loads((scenario_dir / f"{m}.json").read_text()) for m in ("ft_1", "sac_n")}
  for result in results.values():
    assert np.asarray(result["returns"]).shape == (2, 4, 4)
    assert np.asarray(result["curves"]).shape[:2] == (2, 4)
    assert result["budget"] == BUDGET and result["backend"] == "mjx"
  assert results["ft_1"]["policy_params"] == results["ft_1"]["ft_1_policy_params"]
  assert results["sac_n"]["policy_params"] == 4 * results["ft_1"]["ft_1_policy_params"]
  reference = refs.load_reference(references, "toy/tiny", "mjx", BUDGET)
  sac_n = np.asarray(results["sac_n"]["returns"])
  np.testing.assert_allclose(
    reference["final_returns"], np.diagonal(sac_n, axis1=1, axis2=2).mean(axis=0)
  )
  table = (out / "table.md").read_text()
  assert "| ft_1 |" in table and "| sac_n |" in table and "Toy perf" in table
  assert (out / "table.csv").read_text().count("toy/tiny") == 4
  for method in ("ft_1", "sac_n", "rewire"):
    for kind in ("curves", "returns"):
      assert (scenario_dir / f"{method}_{kind}.png").stat().st_size > 1000
  assert (scenario_dir / "rewire_divergence.png").stat().st_size > 1000
  assert "Ablation ladder" in table and "| toy/tiny |" in table
  # Without FT-L2, PackNet, CSP or the ablations no claim is judged, and the file says so.
  assert (out / "claims.md").read_text().startswith("No claim can be judged yet")
  rewire = json.loads((scenario_dir / "rewire.json").read_text())
  assert rewire["method_options"] == {} and np.asarray(rewire["returns"]).shape == (2, 4, 4)


def test_fine_tuning_forgets_where_stored_policies_do_not(reproduced):
  """The toy's odd tasks flip the target: FT-1's single policy ends on the last (odd) task and
  fails the even ones; SAC-N's per-task copies keep them."""
  _, out, _ = reproduced
  final = {}
  for method in ("ft_1", "sac_n"):
    result = json.loads((out / "toy" / "tiny" / f"{method}.json").read_text())
    returns = np.asarray(result["returns"])
    final[method] = returns[:, -1, :].mean(axis=0)  # [eval task]
  assert final["sac_n"][0] > final["ft_1"][0] + 2.0, final
  assert final["sac_n"][2] > final["ft_1"][2] + 2.0, final


def test_a_task_sac_n_did_not_learn_is_left_out_and_marked(reproduced, tmp_path):
  _, out, references = reproduced
  reference = refs.load_reference(references, "toy/tiny", "mjx", BUDGET)
  reference["final_returns"][0] = -1.0
  refs.write_reference(tmp_path, reference)
  results = report.load_results(out)
  markdown, _ = report.build_tables(results, tmp_path)
  assert "| ft_1 | " in markdown and "* |" in markdown
  assert "toy/tiny / ft_1: SAC-N's return is not positive on tasks [0]" in markdown
  ft_1 = next(r for r in results if r["method"] == "ft_1")
  summary = report.summarize_result(ft_1, tmp_path)
  final = np.asarray(ft_1["returns"])[:, -1, 1:] / np.asarray(reference["final_returns"][1:])
  np.testing.assert_allclose(summary.performance, final.mean(axis=-1), rtol=1e-6)


def _as_continual_world(result: dict, success: np.ndarray, curves: np.ndarray) -> dict:
  """The toy ``result`` relabelled as a Continual World run scoring ``success``."""
  return {**result, "env_name": "cw", "scenario": "cw/cw3-t1", "returns": success, "curves": curves}


def test_continual_world_results_are_reported_in_success_rates(reproduced, tmp_path):
  """A cw/ result's metrics are Continual World's on its success rates (no normaliser), with
  SAC-N's success curves for forward transfer; a Brax result beside it is normalised."""
  _, out, _ = reproduced
  by_method = {r["method"]: r for r in report.load_results(out)}
  rng = np.random.default_rng(0)
  success, curves = rng.uniform(size=(2, 4, 4)), rng.uniform(size=(2, 4, 5))
  sac_n = _as_continual_world(by_method["sac_n"], rng.uniform(size=(2, 4, 4)), curves[::-1])
  ft_1 = _as_continual_world(by_method["ft_1"], success, curves)
  refs.write_reference(tmp_path, refs.reference_from_result(sac_n))
  summary = report.summarize_result(ft_1, tmp_path)
  expected = metrics.summarize_success(success, curves, 1, 1, curves[::-1].mean(axis=0))
  np.testing.assert_allclose(summary.performance, success[:, -1].mean(axis=-1))
  np.testing.assert_allclose(summary.forward_transfer, expected.forward_transfer)
  assert np.isfinite(summary.forward_transfer).all()
  markdown, _ = report.build_tables([ft_1, by_method["ft_1"]], tmp_path)
  assert "Continual World perf" in markdown and "Toy perf" in markdown
  assert "in success rates, none normalised" in markdown


def test_finished_pairs_are_kept_and_report_rebuilds(reproduced, capsys):
  argv, out, references = reproduced
  before = (out / "toy" / "tiny" / "ft_1.json").read_text()
  (out / "table.md").unlink()
  assert reproduce_brax.main(argv) == 0  # Fast: nothing is retrained.
  assert "done before, kept" in capsys.readouterr().out
  assert (out / "toy" / "tiny" / "ft_1.json").read_text() == before
  (out / "table.md").unlink()
  assert cli.main(["report", str(out), "--references", str(references)]) == 0
  assert "| sac_n |" in (out / "table.md").read_text()
  # Other settings in the same folder are refused, not silently mixed.
  assert reproduce_brax.main([*argv[:-3], "--seeds", "3", "--no-progress"]) == 2


def test_a_method_spec_runs_beside_the_methods_row_with_its_options(reproduced, tmp_path, capsys):
  """``rewire+distill_coef=0.001``: Rewire at its preset with that option replaced, written
  under the spec's name and recorded with the option, kept when rerun; bad specs exit 2."""
  argv, out, _ = reproduced
  shutil.copytree(out, tmp_path / "results")
  spec = "rewire+distill_coef=0.001"
  moved = [str(tmp_path / "results") if a == str(out) else a for a in argv]
  moved[moved.index("ft_1") : moved.index("--seeds")] = [spec]
  assert reproduce_brax.main(moved) == 0
  scenario_dir = tmp_path / "results" / "toy" / "tiny"
  result = json.loads((scenario_dir / f"{spec}.json").read_text())
  rewire = json.loads((scenario_dir / "rewire.json").read_text())
  assert result["method"] == spec and result["method_options"] == {"distill_coef": 0.001}
  assert np.asarray(result["returns"]).shape == np.asarray(rewire["returns"]).shape
  assert result["returns"] != rewire["returns"]  # The option reached the run.
  assert f"| {spec} |" in (tmp_path / "results" / "table.md").read_text()
  capsys.readouterr()
  assert reproduce_brax.main(moved) == 0
  assert "done before, kept" in capsys.readouterr().out
  for bad in ("rewire+distil=mse", "rewire+num_modes=two", "rewire+distill=foo", "nosuch"):
    refused = tmp_path / "refused"
    assert reproduce_brax.main([*moved[:3], bad, "--out", str(refused), "--no-progress"]) == 2
    assert not refused.exists(), bad  # Refused before any run folder is made.


def test_report_rewrites_the_readmes_tables_and_nothing_else(reproduced, tmp_path, capsys):
  _, out, references = reproduced
  results = tmp_path / "results"
  shutil.copytree(out, results)
  (results / "toy" / "tiny" / "stage.md").write_text("| a |\n|---|\n| 1 |\n")
  readme = tmp_path / "README.md"
  stale = "<!-- report: toy/tiny -->\n| stale |\n<!-- end of report -->"
  readme.write_text(f"# Intro\n\n{stale}\n\nText.\n<!-- report: toy/tiny/stage.md -->\n"
                    "<!-- end of report -->\nEnd.\n")  # fmt: skip
  args = ["report", str(results), "--references", str(references), "--readme", str(readme)]
  assert cli.main(args) == 0
  text = readme.read_text()
  table = text.split("<!-- report: toy/tiny -->\n")[1].split("<!-- end of report -->")[0]
  rows = [line.split(" | ") for line in table.splitlines()[2:]]
  assert [row[0] for row in rows] == ["| FT-1", "| SAC-N", "| Rewire", "| rewire_base"]
  # Each row's cells are the per-scenario table's: performance, forgetting, forward transfer.
  lines = (results / "table.md").read_text().splitlines()
  per_scenario = {x.split(" | ")[1]: x.split(" | ") for x in lines if x.startswith("| toy/tiny |")}
  for row, method in zip(rows, ["ft_1", "sac_n", "rewire", "rewire_base"], strict=True):
    assert row[1:4] == per_scenario[method][2:5], (row, per_scenario[method])
    assert row[4] == per_scenario[method][7] + " |", (row, per_scenario[method])  # Model size.
  assert text.startswith("# Intro\n\n<!-- report: toy/tiny -->\n| method | performance |")
  assert "| stale |" not in text
  assert text.endswith("\nText.\n<!-- report: toy/tiny/stage.md -->\n| a |\n|---|\n| 1 |\n"
                       "<!-- end of report -->\nEnd.\n")  # fmt: skip
  # A block it cannot fill: one line, exit 2, the README untouched.
  capsys.readouterr()
  for before, error in [
    ("<!-- report: toy/none -->\n<!-- end of report -->\n", "No results for scenario 'toy/none'"),
    ("<!-- report: ../table.md -->\n<!-- end of report -->\n", "which is not under"),
    ("<!-- report: toy/tiny -->\nA\n<!-- report: toy/tiny -->\nB\n<!-- end of report -->\n",
     "found 1 such blocks among 2 start and 1 end markers"),
    ("No blocks.\n", "found 0 such blocks"),
  ]:  # fmt: skip
    readme.write_text(before)
    assert cli.main(args) == 2, before
    assert error in capsys.readouterr().err.splitlines()[0]
    assert readme.read_text() == before
  readme.unlink()
  assert cli.main(args) == 2
  assert (
    capsys.readouterr().err == f"rewirejax: error: No file {readme} to rewrite the tables of.\n"
  )


def test_results_from_before_a_config_field_existed_are_kept(reproduced, tmp_path, capsys):
  """A finished result written before ``SACConfig.warmup_actions`` existed was made with its
  default, so it is kept; one written with another value of it is refused."""
  argv, out, _ = reproduced
  older = tmp_path / "results"
  shutil.copytree(out, older)
  for method in ("ft_1", "sac_n", "rewire", "rewire_base"):
    path = older / "toy" / "tiny" / f"{method}.json"
    result = json.loads(path.read_text())
    del result["config"]["sac"]["warmup_actions"]
    path.write_text(json.dumps(result))
  moved = [older if a == str(out) else a for a in argv]
  assert reproduce_brax.main([str(a) for a in moved]) == 0
  assert capsys.readouterr().out.count("done before, kept") == 4
  result["config"]["sac"]["warmup_actions"] = "uniform"
  path.write_text(json.dumps(result))
  assert reproduce_brax.main([str(a) for a in moved]) == 2


def test_normalising_by_a_reference_of_other_settings_is_refused(reproduced, tmp_path):
  _, _, references = reproduced
  with pytest.raises(ValueError, match=r"budget=0\.25"):
    refs.load_reference(references, "toy/tiny", "mjx", 0.25)
  with pytest.raises(ValueError, match="backend=spring"):
    refs.load_reference(references, "toy/tiny", "spring", BUDGET)
  with pytest.raises(ValueError, match="SAC settings fast"):
    refs.load_reference(references, "toy/tiny", "mjx", BUDGET, "fast")
  # A file whose content disagrees with its name (here: renamed by hand) is refused too.
  made = refs.reference_path(references, "toy/tiny", "mjx", BUDGET)
  renamed = refs.reference_path(tmp_path, "toy/tiny", "mjx", BUDGET, "fast")
  assert renamed.name == made.name.replace(".json", ".sac-fast.json")
  renamed.write_text(made.read_text())
  with pytest.raises(ValueError, match="other settings than its name says"):
    refs.load_reference(tmp_path, "toy/tiny", "mjx", BUDGET, "fast")


def test_fast_sac_settings_replace_only_the_papers_sac_settings():
  scenario = "halfcheetah/forgetting"
  paper = brax_configs.get_config(scenario, "ft_1", 0.015, "spring")
  fast = brax_configs.get_config(scenario, "ft_1", 0.015, "spring", sac_settings="fast")
  assert (paper.sac.init_temperature, paper.sac.policy_update_delay) == (2.0, 2)
  assert {f: getattr(fast.sac, f) for f in brax_configs.FAST_SAC} == brax_configs.FAST_SAC
  papers_values = {f: getattr(paper.sac, f) for f in brax_configs.FAST_SAC}
  assert dataclasses.replace(fast, sac=dataclasses.replace(fast.sac, **papers_values)) == paper
  with pytest.raises(ValueError, match="Unknown SAC settings 'slow'; choices"):
    brax_configs.get_config(scenario, "ft_1", 0.015, "spring", sac_settings="slow")
  assert reproduce_brax.main(["--scenarios", "toy/tiny", "--sac", "slow"]) == 2


def test_continual_world_runs_at_the_references_cw_settings():
  """CW's SAC (notes §4) at budget 1, whatever the backend asked for: Warp, uniform warm-up
  actions (its start_steps), whole 200-step episodes a chunk; and reproduce_cw's defaults."""
  import reproduce_cw

  cfg = brax_configs.get_config("cw/cw10", "rewire", 1.0, "spring")
  assert cfg.backend == "warp" and cfg.steps_per_task == 1_000_000 and cfg.max_tasks == 10
  assert (cfg.sac.warmup_actions, cfg.sac.warmup_transitions) == ("uniform", 1000)
  assert cfg.warmup_epochs == 8  # 1,024 transitions: whole steps of the 128 envs.
  assert (cfg.sac.batch_size, cfg.sac.init_temperature, cfg.sac.num_envs) == (128, 2.7, 128)
  assert cfg.epochs_per_chunk % 200 == 0 and (cfg.num_eval_envs, cfg.num_eval_rollouts) == (128, 1)
  assert len(reproduce_cw.CW_SCENARIOS) == 9 and "cw/cw10" in reproduce_cw.CW_SCENARIOS
  assert not set(reproduce_cw.CW_SCENARIOS) & set(reproduce_brax.BRAX_SCENARIOS)


def test_resumed_sac_n_sequence_equals_uninterrupted(tmp_path):
  cfg = brax_configs.get_config("toy/tiny", "sac_n", budget=0.25)
  env = make_scenario_env(get_scenario("toy/tiny"))
  method = make_method("sac_n", cfg)
  kwargs = {"tasks": [0, 1], "seeds": [0, 1], "eval_every_chunks": 2, "progress": False}
  full = train_sequence(cfg, env, method, **kwargs, out_dir=tmp_path / "full")
  train_sequence(cfg, env, method, **kwargs, out_dir=tmp_path / "cut", stop_after_chunks=13)
  resumed = train_sequence(cfg, env, method, **kwargs, out_dir=tmp_path / "cut", resume=True)
  np.testing.assert_array_equal(resumed.returns, full.returns)
  np.testing.assert_array_equal(resumed.curves, full.curves)
  chex.assert_trees_all_equal(
    jax.device_get(resumed.state.method_state), jax.device_get(full.state.method_state)
  )


def test_cpu_protocol_settings_are_shared_and_end_chunks_at_curve_points():
  protocol = brax_configs.PROTOCOLS["cpu"]
  cfg = protocol.run_config("halfcheetah/forgetting")
  assert cfg.sac.hidden_sizes == (64, 64, 64) and cfg.sac.num_envs == 16
  assert cfg.sac.batch_size == 128
  assert {f: getattr(cfg.sac, f) for f in brax_configs.FAST_SAC} == brax_configs.FAST_SAC
  assert cfg.steps_per_task == 150_000 and cfg.num_chunks == 5
  every = brax_configs.eval_every_chunks(cfg, protocol.budget, protocol.sac)
  steps = cfg.curve_steps(every, cfg.num_chunks // every)
  # Five points, the last at the task's end (rounded to whole vectorised steps).
  assert len(steps) == 5 and 150_000 - 16 < steps[-1] <= 150_000
  assert cfg == protocol.run_config("halfcheetah/forgetting", "rewire")
  assert cfg == brax_configs.get_config(
    "halfcheetah/forgetting", "ft_1", 0.15, "spring", 16, 16, "cpu"
  )
  # PNN's columns keep the paper's share of the width (96 of 256); elsewhere its default.
  pnn = brax_configs.method_options("halfcheetah/forgetting", "pnn", "paper", 0.15, "cpu")
  assert pnn == {"width": 24}
  assert brax_configs.method_options("halfcheetah/forgetting", "pnn", "paper", 0.1, "fast") == {}


def test_protocol_gives_defaults_that_flags_override():
  parser_args = reproduce_brax.argparse.Namespace(
    protocol="cpu",
    seeds=5,
    budget=None,
    backend=None,
    num_envs=None,
    eval_envs=8,
    preset=None,
    sac=None,
  )
  reproduce_brax._apply_protocol(parser_args)
  assert (parser_args.seeds, parser_args.eval_envs) == (5, 8)  # Given: kept.
  cpu = brax_configs.PROTOCOLS["cpu"]
  assert (parser_args.budget, parser_args.backend, parser_args.sac) == (
    cpu.budget,
    cpu.backend,
    cpu.sac,
  )
  assert reproduce_brax.main(["--scenarios", "toy/tiny", "--protocol", "gpu"]) == 2


def test_every_method_gets_its_own_options_class_on_every_scenario():
  """``method_config`` is typed: each method's options are an instance of its class, and what a
  result records (``method_options``) resolves back to them."""
  from rewirejax.methods import METHODS, build_options

  for scenario in [*brax_configs.PAPER_OPTIONS, "toy/tiny"]:
    for name, entry in METHODS.items():
      for preset in brax_configs.PRESETS:
        options = brax_configs.method_config(scenario, name, preset, 0.15, "cpu")
        assert isinstance(options, entry.options), (scenario, name)
        recorded = brax_configs.method_options(scenario, name, preset, 0.15, "cpu")
        assert build_options(name, **recorded) == options
  ewc = brax_configs.method_config("ant/transfer", "ewc")
  assert ewc.coef == 10_000.0 and ewc.fisher_samples == 1024
