"""Tables and plots from result files alone: ``rewirejax report results/``.

Reads every ``<results>/<env>/<scenario>/<method>.json`` written by ``make reproduce-brax``,
normalises by the SAC-N reference of the same scenario, backend, budget and SAC settings
(``references``),
and writes ``table.md`` (the paper's Table 1: method x domain, performance +- std over seeds and
model size; then every scenario with forgetting and forward transfer; then the ablation ladder),
``table.csv``, and per run ``<method>_curves.png`` (learning curve of each task),
``<method>_returns.png`` (R as a heat map) and, for rewiring, ``<method>_divergence.png``; and
``claims.md``, the paper's claims judged by the pre-stated rules (``claims``).

``--readme README.md`` also rewrites the README's tables from the same files: each block

    <!-- report: halfcheetah/forgetting -->
    ...
    <!-- end of report -->

gets that scenario's method table, and a block naming a ``.md`` file under the results folder
(``<!-- report: halfcheetah/forgetting/first_stage/first_stage.md -->``) gets that file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
import re
import warnings
from collections import defaultdict
from typing import Any

import numpy as np

from rewirejax import claims, metrics
from rewirejax import logging as logs
from rewirejax import references as refs

# Table 3's ladder: FT-L2, rewiring without caching, + cache, + modes / + alignment, full.
LADDER = claims.LADDER
DOMAINS = {
  "halfcheetah": "HalfCheetah",
  "ant": "Ant",
  "humanoid": "Humanoid",
  "cw": "Continual World",
  "toy": "Toy",
}
SCORED_BY_SUCCESS = frozenset({"cw"})  # Domains whose R holds success rates, not returns.
# The methods' names in the README's tables, in its row order; others keep their registry name.
METHOD_NAMES = {
  "ft_1": "FT-1",
  "ft_n": "FT-N",
  "sac_n": "SAC-N",
  "ft_l2": "FT-L2",
  "ewc": "EWC",
  "packnet": "PackNet",
  "pnn": "PNN",
  "csp": "CSP",
  "rewire": "Rewire",
}
BLOCK_START, BLOCK_END = "<!-- report: ", "<!-- end of report -->"
# A block: its start marker on a line of its own, any lines without another marker, its end.
README_BLOCK = re.compile(
  r"^(?P<head><!-- report: (?P<source>\S+) -->\n)"
  r"(?P<body>(?:(?!<!-- (?:report: |end of report)).)*?)"
  r"^(?P<tail><!-- end of report -->)$",
  re.DOTALL | re.MULTILINE,
)
Row = tuple[dict[str, Any], metrics.Summary]  # A result and its metrics.


def load_results(results_dir: pathlib.Path) -> list[dict[str, Any]]:
  """Every result JSON under ``results_dir`` (files with a ``returns`` matrix)."""
  results = []
  for path in sorted(pathlib.Path(results_dir).glob("*/*/*.json")):
    payload = json.loads(path.read_text())
    if isinstance(payload, dict) and {"returns", "scenario", "method"} <= set(payload):
      payload["_path"] = str(path)
      results.append(payload)
  return results


def _matching_reference(result: dict[str, Any], reference_dir: pathlib.Path) -> dict | None:
  """The SAC-N reference made at the result's scenario, backend, budget and SAC settings, if
  any."""
  try:
    return refs.load_reference(
      reference_dir,
      result["scenario"],
      result["backend"],
      float(result["budget"]),
      _sac_settings(result),
    )
  except ValueError:
    return None


def summarize_result(result: dict[str, Any], reference_dir: pathlib.Path) -> metrics.Summary:
  """Metrics of one result: returns normalised when a matching SAC-N reference exists;
  success rates (``SCORED_BY_SUCCESS``) as they are, with SAC-N's curves for forward
  transfer."""
  reference, reference_curves = None, None
  ref = _matching_reference(result, reference_dir)
  notes = []
  if ref is not None:
    if ref.get("num_envs") != result["config"]["sac"]["num_envs"]:
      notes.append(f"SAC-N reference trained with {ref.get('num_envs')} envs")
    reference = np.asarray(ref["final_returns"], dtype=float)
    curves = np.asarray(ref["curves"], dtype=float)
    if curves.shape == np.asarray(result["curves"]).shape[1:]:
      reference_curves = curves
  scores = [np.asarray(result[k], dtype=float) for k in ("returns", "curves")]
  sizes = result["policy_params"], result["ft_1_policy_params"]
  if result["env_name"] in SCORED_BY_SUCCESS:
    summary = metrics.summarize_success(*scores, *sizes, reference_curves)
  else:
    summary = metrics.summarize(*scores, *sizes, reference, reference_curves)
  return dataclasses.replace(summary, notes=summary.notes + tuple(notes))


def _partial_mark(summary: metrics.Summary) -> str:
  """``*`` when tasks were left out of the normalised averages (SAC-N's return <= 0)."""
  return "*" if summary.excluded_tasks else ""


def _mean_std(x: np.ndarray, digits: int = 2, mark: str = "") -> str:
  """``mean ± std`` of the finite values, then ``mark``; ``n/a`` when there are none."""
  x = np.asarray(x, dtype=float)
  x = x[np.isfinite(x)]
  if not x.size:
    return "n/a"
  return f"{np.mean(x):.{digits}f} ± {np.std(x):.{digits}f}{mark}"


def build_tables(results: list[dict[str, Any]], reference_dir: pathlib.Path) -> tuple[str, str]:
  """(Markdown, CSV) of the domain table, the per-scenario table and the ablation ladder."""
  return _tables([(result, summarize_result(result, reference_dir)) for result in results])


def _tables(rows: list[Row]) -> tuple[str, str]:
  notes = [f"{r['scenario']} / {r['method']}: {n}" for r, summary in rows for n in summary.notes]
  out = io.StringIO()
  _write_domain_table(out, rows)
  csv_text = _write_scenario_table(out, rows)
  _write_ladder(out, rows)
  if notes:
    out.write("\nNotes:\n" + "".join(f"- {n}\n" for n in notes))
  return out.getvalue(), csv_text


def _write_domain_table(out: io.StringIO, rows) -> None:
  """Table 1: per method and domain, the per-seed average over the domain's scenarios."""
  per_domain = defaultdict(lambda: defaultdict(list))
  for result, summary in rows:
    entry = per_domain[(result["method"], result["env_name"])]
    entry["perf"].append(summary.performance)
    entry["partial"].append(summary.excluded_tasks)
    entry["size"].append(summary.model_size)
  domains = [d for d in DOMAINS if any(r["env_name"] == d for r, _ in rows)]
  settings = sorted(
    {(r["backend"], float(r["budget"]), len(r["seeds"]), _sac_settings(r)) for r, _ in rows}
  )
  out.write("# Results\n\n")
  out.write(
    "Settings (backend, budget, seeds, SAC): "
    + "; ".join(f"{b}, {g:g}, {s}, {sac}" for b, g, s, sac in settings)
    + "\n\n## Average performance (SAC-N = 1) and model size (FT-1 = 1)\n\n"
  )
  out.write("| method | " + " | ".join(f"{DOMAINS[d]} perf | size" for d in domains) + " |\n")
  out.write("|---|" + "---|---|" * len(domains) + "\n")
  for method in sorted({r["method"] for r, _ in rows}):
    cells = []
    for d in domains:
      entry = per_domain.get((method, d))
      if entry is None:
        cells += ["", ""]
        continue
      perf = _seedwise_mean(entry["perf"])
      mark = "*" if any(entry["partial"]) else ""
      cells += [_mean_std(perf, mark=mark), f"{np.max(entry['size']):.1f}"]
    out.write(f"| {method} | " + " | ".join(cells) + " |\n")
  out.write(
    "\nPerformance: per seed, the final returns normalised by SAC-N's and averaged over the "
    "domain's tasks and scenarios; ± is the std over seeds. n/a: no SAC-N reference at these "
    "settings, or SAC-N's return is not positive on half the tasks or more. *: SAC-N's "
    "return is not positive on some task, which is left out (the notes below say which): not "
    "the paper's metric."
  )
  if SCORED_BY_SUCCESS & set(domains):
    out.write(
      " Continual World: the mean success rate at the end, not normalised (Meta-World v3 "
      "here, v1 in the paper: not comparable in absolute terms)."
    )


_SCENARIO_HEADER = [
  "scenario",
  "method",
  "performance",
  "forgetting",
  "forward transfer",
  "final return",
  "raw forgetting",
  "model size",
  "seeds",
  "budget",
  "backend",
  "SAC",
  "wall s",
]


def _write_scenario_table(out: io.StringIO, rows) -> str:
  """The per-scenario table in Markdown to ``out``; returns the same table as CSV."""
  out.write(
    "\n\n## Per scenario\n\nForgetting and forward transfer are normalised by SAC-N; final "
    "return and raw forgetting are in returns.\n\n"
  )
  if any(r["env_name"] in SCORED_BY_SUCCESS for r, _ in rows):
    out.write(
      "On Continual World (cw/) every column is in success rates, none normalised, and forward "
      "transfer is against SAC-N's success curves.\n\n"
    )
  header = _SCENARIO_HEADER
  out.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
  table = io.StringIO()
  writer = csv.writer(table)
  writer.writerow(header)
  for result, summary in sorted(rows, key=lambda rs: (rs[0]["scenario"], rs[0]["method"])):
    mark = _partial_mark(summary)
    cells = [
      result["scenario"],
      result["method"],
      _mean_std(summary.performance, mark=mark),
      _mean_std(summary.forgetting, mark=mark),
      _mean_std(summary.forward_transfer, mark=mark),
      _mean_std(summary.final_return, 1),
      _mean_std(summary.raw_forgetting, 1),
      f"{summary.model_size:.2f}",
      str(len(result["seeds"])),
      f"{float(result['budget']):g}",
      result["backend"],
      _sac_settings(result),
      f"{result.get('wall_seconds', float('nan')):.0f}",
    ]
    out.write("| " + " | ".join(cells) + " |\n")
    writer.writerow(cells)
  return table.getvalue()


def _write_ladder(out: io.StringIO, rows) -> None:
  """The ablation ladder (Table 3): each rung's performance per scenario."""
  ladder = [m for m in LADDER if m in {r["method"] for r, _ in rows}]
  if len(ladder) <= 1:
    return
  out.write("\n## Ablation ladder (Table 3)\n\n| scenario | " + " | ".join(ladder) + " |\n")
  out.write("|---|" + "---|" * len(ladder) + "\n")
  for scenario in sorted({r["scenario"] for r, _ in rows}):
    by_method = {r["method"]: s for r, s in rows if r["scenario"] == scenario}
    cells = [
      _mean_std(s.performance, mark=_partial_mark(s)) if s else ""
      for s in (by_method.get(m) for m in ladder)
    ]
    out.write(f"| {scenario} | " + " | ".join(cells) + " |\n")


def method_table(rows: list[Row], scenario: str) -> str:
  """The README's table of one scenario: a method per row (``METHOD_NAMES``' order, then the
  rest by name) with its normalised performance, forgetting, forward transfer and model size.

  Raises:
    ValueError: no row is of ``scenario``.
  """
  by_method = {r["method"]: s for r, s in rows if r["scenario"] == scenario}
  if not by_method:
    raise ValueError(f"No results for scenario {scenario!r} to fill the README's table with.")
  order = [m for m in METHOD_NAMES if m in by_method] + sorted(set(by_method) - set(METHOD_NAMES))
  lines = ["| method | performance | forgetting | forward transfer | model size |"]
  lines.append("|---|---|---|---|---|")
  for method in order:
    s, mark = by_method[method], _partial_mark(by_method[method])
    cells = [_mean_std(x, mark=mark) for x in (s.performance, s.forgetting, s.forward_transfer)]
    lines.append(
      f"| {METHOD_NAMES.get(method, method)} | {' | '.join(cells)} | {s.model_size:.2f} |"
    )
  return "\n".join(lines) + "\n"


def fill_readme(text: str, rows: list[Row], results_dir: pathlib.Path) -> str:
  """``text`` with every ``README_BLOCK`` rewritten from ``rows`` (a scenario's method table)
  or from the ``.md`` file it names under ``results_dir``; the rest of ``text`` unchanged.

  Raises:
    ValueError: no block, a marker outside a well-formed block, a scenario without rows, or a
      file that is not under ``results_dir``.
  """
  results_dir = pathlib.Path(results_dir).resolve()

  def body(match: re.Match) -> str:
    source = match["source"]
    if not source.endswith(".md"):
      return method_table(rows, source)
    path = (results_dir / source).resolve()
    if not (path.is_relative_to(results_dir) and path.is_file()):
      raise ValueError(f"The README's table names {source!r}, which is not under {results_dir}.")
    return path.read_text().rstrip("\n") + "\n"

  blocks = len(README_BLOCK.findall(text))
  if not blocks or text.count(BLOCK_START) != blocks or text.count(BLOCK_END) != blocks:
    raise ValueError(
      f"Expected blocks '{BLOCK_START}SCENARIO -->' ... '{BLOCK_END}', each marker on a line of "
      f"its own: found {blocks} such blocks among {text.count(BLOCK_START)} start and "
      f"{text.count(BLOCK_END)} end markers."
    )
  return README_BLOCK.sub(lambda m: m["head"] + body(m) + m["tail"], text)


def _sac_settings(result: dict[str, Any]) -> str:
  """``"paper"`` or ``"fast"`` (results made before the choice existed: the paper's)."""
  return result.get("sac_settings", "paper")


def _seedwise_mean(per_scenario: list[np.ndarray]) -> np.ndarray:
  """Per-seed mean over scenarios when they ran the same seeds, else all values pooled."""
  lengths = {len(x) for x in per_scenario}
  if len(lengths) == 1:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # All-NaN seeds stay NaN.
      return np.nanmean(np.stack(per_scenario), axis=0)
  return np.concatenate(per_scenario)


def plot_result(result: dict[str, Any], reference_dir: pathlib.Path, out_dir: pathlib.Path) -> None:
  """``<method>_curves.png`` and ``<method>_returns.png`` next to the result file."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  method, names = result["method"], result["task_names"]
  curves = np.asarray(result["curves"], dtype=float)  # [S, T, N]
  steps = np.asarray(result["curve_steps"], dtype=float)
  fig, ax = plt.subplots(figsize=(7, 3.5))
  for t, name in enumerate(names):
    if not curves.size:
      break
    x = t * result["steps_per_task"] + steps
    mean = np.nanmean(curves[:, t], axis=0)
    ax.plot(x, mean, label=f"{t}: {name}")
    if curves.shape[0] > 1:
      std = np.nanstd(curves[:, t], axis=0)
      ax.fill_between(x, mean - std, mean + std, alpha=0.2)
  ax.set(
    xlabel="environment steps (whole sequence)",
    ylabel="deterministic return on the task in training",
    title=f"{result['scenario']}: {method}, {curves.shape[0]} seed(s)",
  )
  ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(out_dir / f"{method}_curves.png", dpi=110)
  plt.close(fig)

  returns = np.nanmean(np.asarray(result["returns"], dtype=float), axis=0)  # [T, T]
  label = "mean return"
  ref = _matching_reference(result, reference_dir)
  if ref is not None:
    returns = metrics.normalize(returns, np.asarray(ref["final_returns"], dtype=float))
    label = "return / SAC-N"
  fig, ax = plt.subplots(figsize=(5, 4.2))
  image = ax.imshow(returns, cmap="viridis")
  ax.set(xlabel="evaluated on task", ylabel="after training task", title=f"R: {method}")
  ax.set_xticks(range(len(names)), [f"{i}" for i in range(len(names))])
  ax.set_yticks(range(len(names)), [f"{i}: {n}" for i, n in enumerate(names)], fontsize=6)
  fig.colorbar(image, ax=ax, label=label)
  fig.tight_layout()
  fig.savefig(out_dir / f"{method}_returns.png", dpi=110)
  plt.close(fig)


def plot_mode_divergence(run_dir: pathlib.Path, out_path: pathlib.Path) -> bool:
  """The paper's Fig. 3: the distillation divergence between modes along training, from the
  run's ``metrics.jsonl`` (mean over seeds per chunk). False when the run logged none."""
  metrics_path = pathlib.Path(run_dir) / "metrics.jsonl"
  if not metrics_path.exists():
    return False
  rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
  rows = [r for r in rows if r.get("rewire/distill") is not None]
  if not any(r["rewire/distill"] > 0 for r in rows):  # None logged, or K = 1.
    return False
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 3))
  ax.plot(range(len(rows)), [r["rewire/distill"] for r in rows], lw=1)
  starts = [i for i, r in enumerate(rows) if r["chunk"] == 0 and i > 0]
  for i in starts:
    ax.axvline(i, color="gray", lw=0.5, ls="--")
  positive = all(r["rewire/distill"] > 0 for r in rows)
  ax.set(
    xlabel="chunk (dashed: a new task)",
    ylabel="divergence between modes",
    yscale="log" if positive else "linear",
  )
  fig.tight_layout()
  fig.savefig(out_path, dpi=110)
  plt.close(fig)
  return True


def build_report(
  results_dir: pathlib.Path,
  reference_dir: pathlib.Path = refs.DEFAULT_DIR,
  readme: pathlib.Path | None = None,
) -> pathlib.Path:
  """Writes ``table.md``, ``table.csv``, ``claims.md`` (``claims``), then, given ``readme``,
  that file's tables (``fill_readme``: a block it cannot fill leaves the file as it was), then
  the plots; returns the Markdown table's path."""
  results_dir = pathlib.Path(results_dir)
  if readme is not None and not pathlib.Path(readme).is_file():
    raise ValueError(f"No file {readme} to rewrite the tables of.")
  results = load_results(results_dir)
  if not results:
    raise ValueError(f"No result files (<env>/<scenario>/<method>.json) under {results_dir}.")
  rows = [(result, summarize_result(result, reference_dir)) for result in results]
  markdown, table = _tables(rows)
  logs.write_text_atomic(results_dir / "table.md", markdown)
  logs.write_text_atomic(results_dir / "table.csv", table)
  logs.write_text_atomic(results_dir / "claims.md", claims.claims_table(rows))
  if readme is not None:
    filled = fill_readme(pathlib.Path(readme).read_text(), rows, results_dir)
    logs.write_text_atomic(pathlib.Path(readme), filled)
  for result in results:
    folder = pathlib.Path(result["_path"]).parent
    plot_result(result, reference_dir, folder)
    plot_mode_divergence(folder / result["method"], folder / f"{result['method']}_divergence.png")
  return results_dir / "table.md"
