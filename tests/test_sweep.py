"""A coefficient grid x seeds as one vmapped job equals separate runs at each grid point."""

import numpy as np
import pytest

from rewirejax.config import RunConfig, SACConfig
from rewirejax.envs.toy import TargetReachEnv
from rewirejax.methods import make_method
from rewirejax.sweep import grid_points, run_sweep
from rewirejax.train import train_sequence

CFG = RunConfig(
  steps_per_task=8 * 60,
  max_tasks=2,
  epochs_per_chunk=11,
  num_eval_envs=8,
  num_eval_rollouts=1,
  sac=SACConfig(
    batch_size=32,
    num_envs=8,
    warmup_transitions=64,
    replay_capacity=1000,
    hidden_sizes=(16, 16),
    actor_lr=1e-3,
    critic_lr=1e-3,
    init_temperature=0.1,
  ),
)


def test_grid_points_and_bad_names():
  points = grid_points({"alpha": [0.0, 1.0], "tau": [0.5]})
  assert points == [{"alpha": 0.0, "tau": 0.5}, {"alpha": 1.0, "tau": 0.5}]
  with pytest.raises(ValueError, match="sweepable"):
    grid_points({"gamma": [0.9]})


def test_sweep_lanes_equal_separate_runs():
  """One task: over several tasks, float-level differences between vmap widths can flip a
  discrete choice (the argsort of near-tied scores, the best mode) and the runs then part."""
  env = TargetReachEnv(num_tasks=2)
  grid = {"alpha": [0.0, 0.5], "tau": [0.3]}
  method = make_method("rewire", CFG, rollback_if_worse=False)
  swept = run_sweep(CFG, env, method, [0], grid, seeds=[0, 1], progress=False)
  assert swept.returns.shape == (2, 2, 1, 1)
  for p, point in enumerate(swept.points):
    alone = make_method(
      "rewire", CFG, rollback_if_worse=False, distill_coef=point["alpha"], tau=point["tau"]
    )
    single = train_sequence(CFG, env, alone, [0], seeds=[0, 1], progress=False)
    np.testing.assert_allclose(swept.returns[p], single.returns, rtol=1e-4)
  # The points really differ (alpha changes the actor's loss).
  assert not np.allclose(swept.returns[0], swept.returns[1])


def test_methods_without_coefficients_are_refused():
  with pytest.raises(ValueError, match="no sweepable coefficients"):
    run_sweep(
      CFG, TargetReachEnv(), make_method("ft_1", CFG), [0], {"alpha": [1.0]}, [0], progress=False
    )


def test_ft_l2_coefficient_sweep_lanes_equal_separate_runs():
  """FT-L2's and EWC's coefficient is a traced leaf too, so their tuning can be as even as
  Rewire's: each lane equals a run at that coefficient (two tasks: the pull acts in task 1)."""
  env = TargetReachEnv(num_tasks=2)
  swept = run_sweep(
    CFG, env, make_method("ft_l2", CFG), [0, 1], {"coef": [0.0, 100.0]}, [0], progress=False
  )
  for p, point in enumerate(swept.points):
    single = train_sequence(
      CFG, env, make_method("ft_l2", CFG, coef=point["coef"]), [0, 1], seeds=[0], progress=False
    )
    np.testing.assert_allclose(swept.returns[p], single.returns, rtol=1e-4)
  assert not np.allclose(swept.returns[0, :, 1], swept.returns[1, :, 1])
  with pytest.raises(ValueError, match="cannot sweep"):
    run_sweep(CFG, env, make_method("ft_l2", CFG), [0], {"alpha": [1.0]}, [0], progress=False)
  with pytest.raises(ValueError, match=">= 0"):
    make_method("ewc", CFG, coef=-1.0)
