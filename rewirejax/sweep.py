"""A grid of a method's traced coefficients x seeds as one vmapped job.

The paper tuned alpha (distillation), beta (alignment) and tau (SoftSort) by hand per scenario.
Here they are float32 leaves of the method's state (``RewireState.coefs``; FT-L2's and EWC's
coefficient in ``AnchorState.coefs``, so that their tuning can be as even), so every
(grid point, seed) pair is one lane of the trainer's seed axis: one compile, one job. Lanes of
different points share their seed's random stream (common random numbers), so a lane equals a
plain run of that seed with those coefficients up to float rounding: the vmap width changes
XLA's reduction order, and over a long RL run such differences grow until a discrete choice
(an argsort of near-tied scores, the best mode) flips and the runs part. Compare points within
one sweep, not a lane with a separate run. Shapes (K, widths) cannot be swept this way.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from rewirejax.config import RunConfig
from rewirejax.methods.base import Method
from rewirejax.train import train_sequence
from rewirejax.trainer import TrainState
from rewirejax.types import TaskEnv

# Command-line names of the swept coefficients -> fields of the method state's ``coefs``:
# Rewire's alpha, beta and tau (``RewireCoefs``), FT-L2's and EWC's coefficient
# (``AnchorCoefs``).
SWEEPABLE = {"alpha": "distill_coef", "beta": "align_coef", "tau": "tau", "coef": "coef"}


@dataclasses.dataclass
class SweepResult:
  """Attributes:
  points: the grid points, ``{name: value}`` with names from ``SWEEPABLE``.
  seeds: the seeds run at every point.
  returns: [num_points, num_seeds, num_tasks, num_eval_tasks] ``R`` per lane.
  curves: [num_points, num_seeds, num_tasks, num_evals].
  """

  points: list[dict[str, float]]
  seeds: list[int]
  returns: np.ndarray
  curves: np.ndarray


def grid_points(grid: dict[str, Sequence[float]]) -> list[dict[str, float]]:
  """Every combination of the grid's values, the last name varying fastest."""
  unknown = set(grid) - set(SWEEPABLE)
  if unknown:
    raise ValueError(f"cannot sweep {sorted(unknown)}; sweepable: {list(SWEEPABLE)}.")
  if not grid or any(len(v) == 0 for v in grid.values()):
    raise ValueError("the grid needs at least one value for each swept name.")
  names = list(grid)
  return [
    dict(zip(names, map(float, values), strict=True))
    for values in itertools.product(*grid.values())
  ]


def run_sweep(
  cfg: RunConfig,
  env: TaskEnv,
  method: Method,
  tasks: Sequence[int],
  grid: dict[str, Sequence[float]],
  seeds: Sequence[int],
  **train_kwargs,
) -> SweepResult:
  """Trains ``method`` at every grid point x seed in one vmapped ``train_sequence`` call.

  ``train_kwargs`` go to ``train_sequence`` (``out_dir``, ``eval_every_chunks``, ...).
  """
  points, seeds = grid_points(grid), [int(s) for s in seeds]
  lanes = [(p, s) for p in points for s in seeds]

  def set_coefs(state: TrainState) -> TrainState:
    coefs = getattr(state.method_state, "coefs", None)
    if coefs is None:
      raise ValueError(f"method {method.name!r} has no sweepable coefficients.")
    missing = [name for name in grid if SWEEPABLE[name] not in coefs._fields]
    if missing:
      raise ValueError(f"method {method.name!r} cannot sweep {missing}; it has {coefs._fields}.")
    values = {
      SWEEPABLE[name]: jnp.asarray([p[name] for p, _ in lanes], jnp.float32) for name in grid
    }
    return state.replace(method_state=state.method_state._replace(coefs=coefs._replace(**values)))

  result = train_sequence(
    cfg, env, method, tasks, [s for _, s in lanes], lane_overrides=set_coefs, **train_kwargs
  )
  shape = (len(points), len(seeds))
  return SweepResult(
    points,
    seeds,
    result.returns.reshape(*shape, *result.returns.shape[1:]),
    result.curves.reshape(*shape, *result.curves.shape[1:]),
  )
