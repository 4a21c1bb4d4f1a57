"""Metrics on hand-made R matrices and curves, against values computed by hand."""

import numpy as np
import pytest

from rewirejax import metrics

# One seed, three tasks. Row j: returns after training task j; column i: evaluated on task i.
R = np.array(
  [
    [
      [100.0, 10.0, 0.0],
      [50.0, 200.0, 20.0],
      [40.0, 150.0, 300.0],
    ]
  ]
)
REF = np.array([100.0, 200.0, 300.0])


def test_average_performance_by_hand():
  # Final row normalised: 40/100, 150/200, 300/300 -> (0.4 + 0.75 + 1.0) / 3.
  np.testing.assert_allclose(metrics.average_performance(R, REF), [(0.4 + 0.75 + 1.0) / 3])


def test_forgetting_by_hand():
  # Raw: task 0 drops 100 -> 40 (60), task 1 drops 200 -> 150 (50); the last task is excluded.
  np.testing.assert_allclose(metrics.forgetting(R), [(60 + 50) / 2])
  # Normalised: 60/100 and 50/200.
  np.testing.assert_allclose(metrics.forgetting(R, REF), [(0.6 + 0.25) / 2])
  assert np.isnan(metrics.forgetting(R[:, :1, :1])[0])


def test_forward_transfer_by_hand():
  curves = np.array([[[50.0, 100.0], [100.0, 300.0], [150.0, 150.0]]])  # [1 seed, 3 tasks, 2]
  ref_curves = np.array([[0.0, 100.0], [100.0, 100.0], [0.0, 300.0]])
  # AUC: task 0: (0.5 + 1)/2 = 0.75 vs ref 0.5 -> (0.75-0.5)/(1-0.5) = 0.5
  #      task 1: (0.5 + 1.5)/2 = 1.0 vs ref 0.5 -> (1.0-0.5)/0.5 = 1.0
  #      task 2: 0.5 vs ref 0.5 -> 0.0
  np.testing.assert_allclose(metrics.forward_transfer(curves, ref_curves, REF), [0.5])
  with pytest.raises(ValueError, match="evaluation points"):
    metrics.forward_transfer(curves, ref_curves[:, :1], REF)


def test_seeds_are_independent_and_nonpositive_references_are_left_out():
  two = np.concatenate([R, 2 * R])
  np.testing.assert_allclose(
    metrics.average_performance(two, REF), [(0.4 + 0.75 + 1.0) / 3, 2 * (0.4 + 0.75 + 1.0) / 3]
  )
  ref = np.array([100.0, -5.0, 300.0])
  summary = metrics.summarize(R, np.zeros((1, 3, 0)), 10, 10, ref)
  # Task 1 left out: performance (40/100 + 300/300) / 2, forgetting of task 0 alone 60/100.
  np.testing.assert_allclose(summary.performance, [(0.4 + 1.0) / 2])
  np.testing.assert_allclose(summary.forgetting, [0.6])
  np.testing.assert_allclose(summary.raw_forgetting, [55.0])
  assert summary.excluded_tasks == (1,)
  assert any("not positive on tasks [1]" in note for note in summary.notes)
  # Half the tasks or more without a positive reference: the normalised metrics are undefined.
  for ref, excluded in (([-1.0, -5.0, 300.0], (0, 1)), (np.full(3, -1.0), (0, 1, 2))):
    summary = metrics.summarize(R, np.zeros((1, 3, 0)), 10, 10, np.asarray(ref))
    assert np.isnan(summary.performance).all() and np.isnan(summary.forgetting).all()
    assert summary.excluded_tasks == excluded


def test_model_sizes():
  assert metrics.model_size(139_532, 139_532) == 1.0
  assert metrics.model_size(8 * 139_532, 139_532) == 8.0


def test_summary_with_a_reference():
  summary = metrics.summarize(R, np.zeros((1, 3, 0)), 20, 10, REF)
  np.testing.assert_allclose(summary.forgetting, [(0.6 + 0.25) / 2])
  np.testing.assert_allclose(summary.performance, [(0.4 + 0.75 + 1.0) / 3])
  assert summary.notes == () and summary.excluded_tasks == ()


def test_summary_without_reference_keeps_raw_metrics():
  summary = metrics.summarize(R, np.zeros((1, 3, 0)), 20, 10)
  assert np.isnan(summary.performance).all() and np.isnan(summary.forward_transfer).all()
  assert np.isnan(summary.forgetting).all()
  np.testing.assert_allclose(summary.raw_forgetting, [55.0])
  np.testing.assert_allclose(summary.final_return, [(40 + 150 + 300) / 3])
  assert summary.model_size == 2.0


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match="square"):
    metrics.average_performance(np.zeros((1, 2, 3)), np.ones(3))
  with pytest.raises(ValueError, match="one return per task"):
    metrics.average_performance(R, np.ones(2))


def test_steps_to_threshold_interpolates_by_hand():
  steps = np.array([10.0, 20.0, 30.0])
  curves = np.array([[0.0, 100.0, 300.0], [500.0, 0.0, 0.0], [0.0, 10.0, 20.0]])
  # Row 0 crosses 200 halfway from 20 to 30; row 1 starts above; row 2 never gets there.
  np.testing.assert_allclose(metrics.steps_to_threshold(curves, steps, 200.0), [25.0, 10.0, np.nan])


def test_late_gain_by_hand():
  steps = np.array([25.0, 50.0, 75.0, 100.0])
  # The last 20 % starts at step 80: 100 + (80 - 75) / 25 * (200 - 100) = 120 -> (200 - 120)/200.
  np.testing.assert_allclose(metrics.late_gain(np.array([0.0, 50.0, 100.0, 200.0]), steps), 0.4)
  flat = np.array([[0.0, 100.0, 100.0, 100.0]])
  np.testing.assert_allclose(metrics.late_gain(flat, steps), [0.0])
  with pytest.raises(ValueError, match="fraction"):
    metrics.late_gain(flat, steps, fraction=1.0)


def test_bootstrap_median_against_a_python_loop():
  values = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [100.0, 50.0]])
  median, low, high = metrics.bootstrap_median(values, num_resamples=500, seed=3)
  np.testing.assert_allclose(median, [3.0, 30.0])
  rng = np.random.default_rng(3)
  picks = rng.integers(0, 5, size=(500, 5))
  slow = np.array([[np.median(values[p, j]) for j in range(2)] for p in picks])
  np.testing.assert_allclose(low, np.quantile(slow, 0.025, axis=0))
  np.testing.assert_allclose(high, np.quantile(slow, 0.975, axis=0))
  assert np.all(low <= median) and np.all(median <= high)


def test_continual_world_metrics_on_success_rates_by_hand():
  """Success rates need no normaliser (Wołczyk et al. 2021): one seed, two tasks."""
  success = np.array([[[0.8, 0.1], [0.5, 0.9]]])
  curves = np.array([[[0.2, 0.8], [0.6, 1.0]]])
  sac_n_curves = np.array([[0.0, 0.4], [0.2, 0.8]])
  summary = metrics.summarize_success(success, curves, 10, 10, sac_n_curves)
  np.testing.assert_allclose(summary.performance, [(0.5 + 0.9) / 2])  # The final row.
  np.testing.assert_allclose(summary.forgetting, [0.8 - 0.5])  # Task 0 only.
  np.testing.assert_allclose(summary.raw_forgetting, summary.forgetting)
  # AUC 0.5 vs 0.2 -> 0.3 / 0.8; AUC 0.8 vs 0.5 -> 0.3 / 0.5.
  np.testing.assert_allclose(summary.forward_transfer, [(0.3 / 0.8 + 0.3 / 0.5) / 2])
  assert summary.notes == () and summary.excluded_tasks == ()
  without = metrics.summarize_success(success, curves, 10, 10)
  assert np.isnan(without.forward_transfer).all()
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    metrics.summarize_success(100 * success, curves, 10, 10)
