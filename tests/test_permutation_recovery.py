"""The demo's entry point on a tiny config: rewiring alone recovers the shuffled function."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import permutation_recovery as demo


def test_adjacent_swaps_are_disjoint_neighbour_transpositions():
  order = demo.adjacent_swaps(np.random.default_rng(0), 16, swap_fraction=0.5)
  np.testing.assert_array_equal(np.sort(order), np.arange(16))
  moved = np.flatnonzero(order != np.arange(16))
  assert len(moved) == 8  # 4 of 8 pairs swapped.
  assert np.all(np.abs(order - np.arange(16)) <= 1)


def test_scores_alone_recover_the_teacher(tmp_path):
  # Seeds 2 and 3 recover within a few hundred steps with the demo's defaults.
  argv = ["--seed", "2", "--num-seeds", "2", "--num-steps", "400", "--out", str(tmp_path)]
  curve = demo.main(argv)
  loss, recovered = np.asarray(curve.loss), np.asarray(curve.recovered)
  assert np.all(loss[:, 0] > 1e-2)  # The shuffled copy starts as a different function.
  assert np.all(recovered[:, 0] == 0.0)  # Every pair is swapped: no neuron starts in place.
  np.testing.assert_array_equal(recovered[:, -1], 1.0)
  assert np.all(loss[:, -1] < 1e-10)
  assert (tmp_path / "permutation_recovery.png").stat().st_size > 0
  rows = (tmp_path / "permutation_recovery.csv").read_text().splitlines()
  assert len(rows) == 1 + 2 * 401
