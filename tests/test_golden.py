"""Frozen behaviour on Brax: FT-1 and Rewire, two seeds vmapped, a few chunks of the first two
tasks of halfcheetah/forgetting, with learning-curve points (``tests/golden.py``; every
registered method's toy run is frozen in ``test_baselines``)."""

import pytest

from rewirejax.config import RunConfig, SACConfig
from rewirejax.envs.scenarios import get_scenario, make_scenario_env
from rewirejax.methods import make_method
from rewirejax.train import train_sequence
from tests import golden

CFG = RunConfig(
  steps_per_task=4 * 2 * 4,  # Two chunks of 4 epochs of 4 envs.
  max_tasks=4,
  epochs_per_chunk=4,
  num_eval_envs=2,
  num_eval_rollouts=1,
  sac=SACConfig(
    batch_size=8, num_envs=4, warmup_transitions=8, replay_capacity=64, hidden_sizes=(8, 8)
  ),
)


@pytest.mark.parametrize("name", ["ft_1", "rewire"])
def test_short_brax_run_is_golden(name):
  scenario = get_scenario("halfcheetah/forgetting")
  env = make_scenario_env(scenario, backend="spring", episode_length=16)
  method = make_method(name, CFG)
  result = train_sequence(
    CFG, env, method, [0, 1], seeds=[0, 1], eval_every_chunks=1, progress=False
  )
  assert result.curves.shape == (2, 2, 2)
  golden.check(f"halfcheetah/{name}", result)
