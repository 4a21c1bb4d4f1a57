"""The claims' rules (``rewirejax.claims``) against hand-worked cases and a slow reference."""

import math

import numpy as np
import pytest

from rewirejax import claims
from rewirejax.metrics import Summary


def _summary(performance, model_size=2.0) -> Summary:
  nan = np.full(len(performance), np.nan)
  return Summary(np.asarray(performance, dtype=float), nan, nan, nan, nan, model_size)


def _slow_difference(a, b):
  """d and SE written out: sample variances by explicit sums."""
  mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
  var_a = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1)
  var_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1)
  return mean_a - mean_b, math.sqrt(var_a / len(a) + var_b / len(b))


def test_difference_matches_the_slow_reference_and_drops_non_finite_seeds():
  rng = np.random.default_rng(0)
  a, b = rng.normal(1.0, 0.3, 3), rng.normal(0.5, 0.2, 5)
  np.testing.assert_allclose(claims.difference(a, b), _slow_difference(a, b), rtol=1e-12)
  np.testing.assert_allclose(claims.difference([*a, np.nan], b), _slow_difference(a, b), rtol=1e-12)
  d, se = claims.difference([1.0, np.nan], b)  # One seed: no SE, so no rule can decide.
  assert d == pytest.approx(1.0 - np.mean(b)) and np.isnan(se)
  assert claims.beats(d, se) == claims.close(d, se, True) == "cannot tell"


def test_a_single_seed_or_no_reference_is_judged_cannot_tell():
  one_seed = {m: _summary([p]) for m, p in (("rewire", 2.0), ("ft_l2", 0.1), ("packnet", 0.1))}
  no_reference = {m: _summary([np.nan] * 3) for m in ("rewire", "ft_l2", "packnet", "csp")}
  for by_method in (one_seed, no_reference):
    assert {v for _, v, _ in claims.judge("s", by_method)} == {"cannot tell"}


@pytest.mark.parametrize(
  "d, se, want", [(0.3, 0.2, "holds"), (-0.3, 0.2, "does not hold"), (0.1, 0.2, "cannot tell")]
)
def test_beats(d, se, want):
  assert claims.beats(d, se) == want


@pytest.mark.parametrize(
  "d, se, smaller, want",
  [
    (-0.05, 0.02, True, "holds"),  # Within the 0.1 margin by more than one SE.
    (-0.05, 0.02, False, "cannot tell"),  # Close, but not the smaller model.
    (-0.09, 0.02, True, "cannot tell"),
    (-0.15, 0.02, True, "does not hold"),
    (0.5, 0.1, True, "holds"),
  ],
)
def test_close(d, se, smaller, want):
  assert claims.close(d, se, smaller) == want


def test_judge_combines_comparisons_as_the_rules_say():
  by_method = {
    "rewire": _summary([1.3, 1.4, 1.5], 2.8),
    "ft_l2": _summary([0.9, 1.0, 1.1]),
    "packnet": _summary([1.3, 1.5, 1.4]),  # Level with Rewire: (ii) cannot be told.
    "csp": _summary([1.3, 1.4, 1.5], 5.4),
  }
  verdicts = {claim: (verdict, parts) for claim, verdict, parts in claims.judge("s", by_method)}
  assert set(verdicts) == {"ii", "iii"}  # No ablations: (iv) is not judged.
  verdict, parts = verdicts["ii"]
  assert verdict == "cannot tell" and [p.verdict for p in parts] == ["holds", "cannot tell"]
  assert verdicts["iii"][0] == "holds" and verdicts["iii"][1][0].seeds == 3
  by_method["packnet"] = _summary([1.8, 1.9, 2.0])  # Above Rewire: (ii) does not hold.
  assert {c: v for c, v, _ in claims.judge("s", by_method)}["ii"] == "does not hold"


def _ladder(values):
  return {m: _summary(p + np.array([-0.01, 0.0, 0.01])) for m, p in values.items()}


def test_the_ladder_holds_only_if_every_step_rises_and_the_span_is_over_two_se():
  rising = {
    "ft_l2": 0.6, "rewire_base": 0.7, "rewire_cache": 0.9, "rewire_cache_modes": 1.1,
    "rewire_cache_align": 1.15, "rewire": 1.3,
  }  # fmt: skip
  assert claims.judge("s", _ladder(rising))[0][:2] == ("iv", "holds")
  flat = {**rising, "rewire_cache_align": 0.895}  # Falls within one SE (0.008) of its step.
  assert claims.judge("s", _ladder(flat))[0][1] == "cannot tell"
  falling = {**rising, "rewire_cache_align": 0.8}
  assert claims.judge("s", _ladder(falling))[0][1] == "does not hold"


def test_claims_table_lines_and_the_empty_case():
  rows = [
    ({"scenario": "s", "method": m}, _summary(p))
    for m, p in (
      ("rewire", [1.3, 1.4, 1.5]),
      ("ft_l2", [0.9, 1.0, 1.1]),
      ("packnet", [1.2, 1.4, 1.6]),
    )
  ]
  table = claims.claims_table(rows)
  assert "| (ii) | s | **cannot tell** with 3 seeds | rewire - ft_l2: +0.40 (0.08);" in table
  assert claims.claims_table(rows[:1]).startswith("No claim can be judged yet")


def test_a_remedy_is_confirmed_only_above_rewire_by_more_than_one_se():
  """The remedies' table: each stated remedy that has run, against the paper preset's Rewire
  (d > SE: confirmed); a row not stated as a remedy, or on another scenario, is not judged."""
  robustness = "halfcheetah/robustness"
  rows = [
    ({"scenario": robustness, "method": m}, _summary(p))
    for m, p in (
      ("rewire", [0.0, 0.1, 0.2]),
      ("rewire_cache_modes", [0.5, 0.6, 0.7]),  # d 0.5, SE 0.08.
      ("rewire+distill=mse", [0.05, 0.15, 0.25]),  # d 0.05 < SE 0.08.
      ("rewire+tau=0.5", [0.9, 1.0, 1.1]),  # Not a stated remedy.
    )
  ]
  rows.append(({"scenario": "s", "method": "rewire_cache_modes"}, _summary([2.0, 2.1, 2.2])))
  rows.append(({"scenario": "s", "method": "rewire"}, _summary([0.0, 0.1, 0.2])))
  table = claims.claims_table(rows)
  lines = table.splitlines()
  assert lines[0] == "No claim can be judged yet: its methods' results are missing."
  assert lines[2] == "| remedy | scenario | verdict | d, SE |"
  assert lines[4:] == [
    f"| rewire_cache_modes | {robustness} | **confirmed** | "
    "rewire_cache_modes - rewire: +0.50 (0.08) |",
    f"| rewire+distill=mse | {robustness} | **not confirmed** | "
    "rewire+distill=mse - rewire: +0.05 (0.08) |",
  ]
  assert claims.confirms(0.1, float("nan")) == "not confirmed"
