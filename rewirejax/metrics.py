"""The paper's continual-learning metrics (SPEC §7), in NumPy on the host.

Notation: ``R[s, j, i]`` is seed ``s``'s deterministic return on task ``i`` after training task
``j`` (tasks in training order, so ``R`` is square per seed); ``curves[s, i, k]`` is the return on
task ``i`` at the ``k``-th evaluation while it is trained; ``reference`` is SAC-N's return per
task (``ref[i]``) measured by rewirejax itself at the same budget, backend and SAC
settings. With ``T`` tasks:

* average performance ``P_s = 1/T sum_i R[s, T-1, i] / ref[i]`` (paper, Sec. 4.1);
* forgetting ``F_i = (R[i, i] - R[T-1, i]) / ref[i]``, averaged over ``i < T-1`` (the last task
  cannot be forgotten yet);
* forward transfer ``FT_i = (AUC_i - AUC_i^ref) / (1 - AUC_i^ref)``, with ``AUC_i`` the mean of
  task ``i``'s curve divided by ``ref[i]`` (the area under the normalised learning curve, the
  training time rescaled to 1) and ``AUC_i^ref`` the same for SAC-N's curve;
* model size: the largest policy parameter count over the run divided by FT-1's.

Returns are normalised by dividing by ``ref[i]``, which is meaningful only for ``ref[i] > 0``.
A task whose reference is not positive (SAC-N did not learn it, e.g. at a tiny budget) is left
out of the normalised averages, and ``Summary.excluded_tasks`` lists it (a note says so and the
report marks such cells), since the metric is then not the paper's. When half the tasks or more
are left out, SAC-N learned too little for a normaliser and the normalised metrics are NaN.
Raw forgetting is reported alongside.

On Continual World the score is a success rate in [0, 1], which needs no normaliser
(``summarize_success``, Wołczyk et al. 2021): performance is the mean final success,
forgetting ``R[i, i] - R[T-1, i]`` in success, and forward transfer the formula above on the
raw success curves against SAC-N's.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np


def _check_square(returns: np.ndarray) -> np.ndarray:
  returns = np.asarray(returns, dtype=float)
  if returns.ndim != 3 or returns.shape[1] != returns.shape[2]:
    raise ValueError(
      f"returns must be R[seed, after_task, eval_task] with eval tasks in training order "
      f"(square per seed), got shape {returns.shape}."
    )
  return returns


def _reference(reference, num_tasks: int) -> np.ndarray:
  ref = np.asarray(reference, dtype=float)
  if ref.shape != (num_tasks,):
    raise ValueError(f"reference must have one return per task ({num_tasks}), got {ref.shape}.")
  return ref


def normalize(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """``values[..., i] / reference[i]``; NaN where ``reference[i] <= 0`` (undefined)."""
  ref = np.asarray(reference, dtype=float)
  safe = np.where(ref > 0, ref, np.nan)
  return np.asarray(values, dtype=float) / safe


def _nanmean(x: np.ndarray, axis) -> np.ndarray:
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # All-NaN slices stay NaN.
    return np.nanmean(x, axis=axis)


def average_performance(returns: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """``P_s`` [num_seeds]: final-row returns normalised by SAC-N, averaged over tasks."""
  returns = _check_square(returns)
  ref = _reference(reference, returns.shape[1])
  return _nanmean(normalize(returns[:, -1, :], ref), axis=-1)


def forgetting(returns: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
  """``F_s`` [num_seeds]: mean over ``i < T-1`` of ``R[i, i] - R[T-1, i]`` (normalised by the
  reference when given). NaN for a single task."""
  returns = _check_square(returns)
  num_tasks = returns.shape[1]
  diag = np.diagonal(returns, axis1=1, axis2=2)  # [S, T]: R[s, i, i]
  drop = diag - returns[:, -1, :]
  if reference is not None:
    drop = normalize(drop, _reference(reference, num_tasks))
  if num_tasks < 2:
    return np.full(returns.shape[0], np.nan)
  return _nanmean(drop[:, :-1], axis=-1)


def area_under_curve(curves: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """``AUC[s, i]``: the mean of task ``i``'s learning curve, normalised by ``reference[i]``."""
  curves = np.asarray(curves, dtype=float)
  if curves.ndim != 3 or curves.shape[-1] == 0:
    raise ValueError(f"curves must be [seed, task, num_evals >= 1], got shape {curves.shape}.")
  return _nanmean(normalize(np.moveaxis(curves, 1, -1), reference), axis=-2)


def forward_transfer(
  curves: np.ndarray, reference_curves: np.ndarray, reference: np.ndarray
) -> np.ndarray:
  """``FT_s`` [num_seeds]: mean over tasks of ``(AUC_i - AUC_i^ref) / (1 - AUC_i^ref)``.

  Args:
    curves: [num_seeds, num_tasks, num_evals] the method's learning curves.
    reference_curves: [num_tasks, num_evals] SAC-N's (mean over its seeds), same eval points.
    reference: [num_tasks] SAC-N's final returns, the normaliser.
  """
  curves = np.asarray(curves, dtype=float)
  ref_curves = np.asarray(reference_curves, dtype=float)
  if ref_curves.shape != curves.shape[1:]:
    raise ValueError(
      f"reference curves {ref_curves.shape} and curves {curves.shape[1:]} differ in tasks or "
      "evaluation points: they must come from the same budget and evaluation schedule."
    )
  ref = _reference(reference, curves.shape[1])
  auc = area_under_curve(curves, ref)  # [S, T]
  auc_ref = area_under_curve(ref_curves[None], ref)[0]  # [T]
  gap = np.where(np.abs(1.0 - auc_ref) > 1e-6, 1.0 - auc_ref, np.nan)
  return _nanmean((auc - auc_ref) / gap, axis=-1)


def steps_to_threshold(curves: np.ndarray, steps: np.ndarray, threshold: float) -> np.ndarray:
  """The env steps at which each curve first reaches ``threshold``, linearly interpolated
  between the last point below and the first at or above it (the first point itself if it is
  already there); NaN if the curve never reaches it.

  Args:
    curves: [..., N] returns at ``steps``.
    steps: [N] increasing env steps.
  Returns:
    [...] steps (float).
  """
  curves, steps = np.asarray(curves, dtype=float), np.asarray(steps, dtype=float)
  flat = curves.reshape(-1, curves.shape[-1])
  out = np.full(flat.shape[0], np.nan)
  for row, curve in enumerate(flat):
    above = np.flatnonzero(curve >= threshold)
    if not above.size:
      continue
    k = above[0]
    if k == 0:
      out[row] = steps[0]
      continue
    low, high = curve[k - 1], curve[k]
    out[row] = steps[k - 1] + (threshold - low) / (high - low) * (steps[k] - steps[k - 1])
  return out.reshape(curves.shape[:-1])


def late_gain(curves: np.ndarray, steps: np.ndarray, fraction: float = 0.2) -> np.ndarray:
  """The share of a task's final return added in its last ``fraction`` of steps:
  ``(c(end) - c((1 - fraction) end)) / |c(end)|``, ``c`` interpolated linearly between curve
  points. Small when the curve has levelled off by the task's end.

  Args:
    curves: [..., N] returns at ``steps`` (the last point at the task's end).
    steps: [N] increasing env steps.
  Returns:
    [...] the share (negative if the return fell).
  """
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"fraction must be in (0, 1), got {fraction}.")
  curves, steps = np.asarray(curves, dtype=float), np.asarray(steps, dtype=float)
  at = (1.0 - fraction) * steps[-1]
  earlier = np.apply_along_axis(lambda c: np.interp(at, steps, c), -1, curves)
  final = curves[..., -1]
  return (final - earlier) / np.abs(final)


def bootstrap_median(
  values: np.ndarray, num_resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The median over seeds (axis 0) with a percentile bootstrap band: resample the seeds with
  replacement ``num_resamples`` times and take the ``(1 - level) / 2`` and ``(1 + level) / 2``
  quantiles of the resampled medians.

  Args:
    values: [num_seeds, ...].
  Returns:
    (median, low, high), each [...].
  """
  values = np.asarray(values, dtype=float)
  rng = np.random.default_rng(seed)
  picks = rng.integers(0, values.shape[0], size=(num_resamples, values.shape[0]))
  medians = np.median(values[picks], axis=1)  # [num_resamples, ...]
  tail = (1.0 - level) / 2.0
  low, high = np.quantile(medians, [tail, 1.0 - tail], axis=0)
  return np.median(values, axis=0), low, high


def model_size(policy_params: int, ft_1_policy_params: int) -> float:
  """The method's largest policy parameter count relative to FT-1's."""
  if ft_1_policy_params <= 0:
    raise ValueError("FT-1's parameter count must be positive.")
  return policy_params / ft_1_policy_params


@dataclasses.dataclass(frozen=True)
class Summary:
  """Per-seed metrics of one (scenario, method) run (NaN where undefined)."""

  performance: np.ndarray  # [num_seeds] P_s (NaN without a reference).
  forgetting: np.ndarray  # [num_seeds] F_s normalised by the reference (NaN without one).
  forward_transfer: np.ndarray  # [num_seeds] FT_s (NaN without reference curves).
  final_return: np.ndarray  # [num_seeds] mean raw return of the final row.
  raw_forgetting: np.ndarray  # [num_seeds] F_s in returns.
  model_size: float
  notes: tuple[str, ...] = ()
  excluded_tasks: tuple[int, ...] = ()  # Left out of the normalised averages (reference <= 0).


def summarize(
  returns: np.ndarray,
  curves: np.ndarray,
  policy_params: int,
  ft_1_policy_params: int,
  reference: np.ndarray | None = None,
  reference_curves: np.ndarray | None = None,
) -> Summary:
  """All metrics of one run; without a reference only the raw ones are defined."""
  returns = _check_square(returns)
  num_seeds, notes = returns.shape[0], []
  nan = np.full(num_seeds, np.nan)
  performance, normalised_forgetting, transfer = nan, nan, nan
  if reference is None:
    notes.append("no SAC-N reference: raw returns only")
  else:
    ref = _reference(reference, returns.shape[1])
    excluded = tuple(np.flatnonzero(ref <= 0).tolist())
    if 2 * len(excluded) >= len(ref):
      notes.append(
        f"SAC-N's return is not positive on tasks {list(excluded)} (half or more): raw metrics only"
      )
    else:
      if excluded:
        notes.append(
          f"SAC-N's return is not positive on tasks {list(excluded)}: normalised metrics "
          "average the other tasks only (marked *)"
        )
      # ``normalize`` makes the excluded tasks NaN and the averages skip them.
      performance = average_performance(returns, ref)
      normalised_forgetting = forgetting(returns, ref)
      curves = np.asarray(curves, dtype=float)
      if reference_curves is not None and curves.size:
        transfer = forward_transfer(curves, reference_curves, ref)
  return Summary(
    performance=performance,
    forgetting=normalised_forgetting,
    forward_transfer=transfer,
    final_return=np.mean(returns[:, -1, :], axis=-1),
    raw_forgetting=forgetting(returns),
    model_size=model_size(policy_params, ft_1_policy_params),
    notes=tuple(notes),
    excluded_tasks=() if reference is None else excluded,
  )


def summarize_success(
  success: np.ndarray,
  curves: np.ndarray,
  policy_params: int,
  ft_1_policy_params: int,
  reference_curves: np.ndarray | None = None,
) -> Summary:
  """Continual World's metrics: ``summarize`` with every task's normaliser 1.

  Args:
    success: [num_seeds, num_tasks, num_tasks] ``R`` in success rates.
    curves: [num_seeds, num_tasks, num_evals] success while each task is trained.
    reference_curves: [num_tasks, num_evals] SAC-N's success curves (mean over its seeds), for
      forward transfer ``(AUC_i - AUC_i^ref) / (1 - AUC_i^ref)``; NaN without them.
  """
  success = _check_square(success)
  if np.any((success < 0) | (success > 1)):
    raise ValueError("success rates must lie in [0, 1]; were returns passed as success?")
  unit = np.ones(success.shape[1])
  return summarize(success, curves, policy_params, ft_1_policy_params, unit, reference_curves)
