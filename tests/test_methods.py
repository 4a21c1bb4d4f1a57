"""The methods' hooks: FT-1, FT-N, SAC-N (stored copies, fresh policies, model sizes)."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rewirejax.config import RunConfig, SACConfig
from rewirejax.envs.toy import TargetReachEnv
from rewirejax.methods import METHODS, base, make_method
from rewirejax.methods.base import actor_size, ft_1_policy_size, num_params
from rewirejax.trainer import make_trainer

CFG = RunConfig(
  steps_per_task=8 * 40,
  max_tasks=4,
  epochs_per_chunk=4,
  num_eval_envs=4,
  num_eval_rollouts=1,
  sac=SACConfig(
    batch_size=16, num_envs=8, warmup_transitions=16, replay_capacity=400, hidden_sizes=(8, 8)
  ),
)


def run_tasks(method, num_tasks):
  """Trains ``method`` one chunk per task on the toy env; returns the trainer and the states
  right after each task's ``begin_task`` and after its ``end_task``."""
  trainer = make_trainer(CFG, TargetReachEnv(num_tasks=4), method)
  begin, warmup = jax.jit(trainer.begin_task), jax.jit(trainer.warmup)
  chunk, end = jax.jit(trainer.train_chunk), jax.jit(trainer.end_task)
  state = jax.jit(trainer.init)(jax.random.key(0))
  begun, ended = [], []
  for t in range(num_tasks):
    task = jnp.int32(t)
    state = begin(state, task)
    begun.append(state)
    state, _ = warmup(state, task)
    state, _ = chunk(state, task)
    state, _ = end(state, task)
    ended.append(state)
  return trainer, begun, ended


def _run_tasks(method_name, num_tasks):
  """``run_tasks`` of a registered method: the trainer, the final state, and the actor after
  each task and at each task's start."""
  trainer, begun, ended = run_tasks(make_method(method_name, CFG), num_tasks)
  actor = lambda state: state.learner.params.actor  # noqa: E731
  return trainer, ended[-1], [actor(s) for s in ended], [actor(s) for s in begun]


def test_registry_and_unknown_method():
  assert {"ft_1", "ft_n", "sac_n"} <= set(METHODS)
  with pytest.raises(ValueError, match="Unknown method 'ewc2'; choices"):
    make_method("ewc2", CFG)


@pytest.mark.parametrize("name", ["ft_n", "sac_n"])
def test_stored_copy_is_the_policy_evaluated_for_its_task(name):
  _, state, actors, _ = _run_tasks(name, 3)
  method = make_method(name, CFG)
  for t in range(3):
    chex.assert_trees_all_equal(
      method.eval_params(state.learner.params, state.method_state, jnp.int32(t)), actors[t]
    )
  # A task not trained yet is evaluated with the current policy.
  chex.assert_trees_all_equal(
    method.eval_params(state.learner.params, state.method_state, jnp.int32(3)), actors[2]
  )
  # The stored copies differ from one another (each task trained its own).
  assert not np.allclose(
    actors[0]["params"]["hidden_0"]["kernel"], actors[2]["params"]["hidden_0"]["kernel"]
  )


def test_sac_n_starts_each_task_from_a_fresh_policy_and_ft_n_from_the_last():
  _, _, sac_actors, sac_starts = _run_tasks("sac_n", 2)
  _, _, ft_actors, ft_starts = _run_tasks("ft_n", 2)
  chex.assert_trees_all_equal(sac_starts[0], ft_starts[0])  # Same init for task 0.
  chex.assert_trees_all_equal(ft_starts[1], ft_actors[0])  # FT-N continues.
  kernel = lambda a: a["params"]["hidden_0"]["kernel"]  # noqa: E731
  assert not np.allclose(kernel(sac_starts[1]), kernel(sac_actors[0]))  # SAC-N restarts...
  assert not np.allclose(kernel(sac_starts[1]), kernel(sac_starts[0]))  # ...from a new draw.
  bound = 1.0 / np.sqrt(TargetReachEnv().observation_size)  # PyTorch's Linear init.
  assert np.max(np.abs(kernel(sac_starts[1]))) <= bound


def test_ft_1_evaluates_the_current_policy_for_every_task():
  _, state, actors, _ = _run_tasks("ft_1", 2)
  method = make_method("ft_1", CFG)
  for t in range(4):
    chex.assert_trees_all_equal(
      method.eval_params(state.learner.params, state.method_state, jnp.int32(t)), actors[-1]
    )


def test_model_sizes_count_one_policy_per_stored_copy():
  env = TargetReachEnv()
  one = ft_1_policy_size(env.observation_size, env.action_size, CFG)
  # obs 3 -> 8 -> 8 -> one head of 2 x act 2: (3*8+8) + (8*8+8) + (8*4+4).
  assert one == (3 * 8 + 8) + (8 * 8 + 8) + (8 * 4 + 4)
  cfg8 = dataclasses.replace(CFG, max_tasks=8)
  for name, copies in (("ft_1", 1), ("sac_n", 8), ("ft_n", 8)):
    assert reported_size(make_method(name, cfg8), cfg8, env, num_tasks=8) == copies * one
  # Task-headed actors count the head slots used so far.
  heads = {"params": {"hidden": jnp.zeros((5, 7)), "head_kernel": jnp.zeros((4, 7, 2))}}
  heads["params"]["head_bias"] = jnp.zeros((4, 2))
  assert actor_size(heads, 2) == 35 + 2 * 16 and num_params(heads) == 35 + 4 * 16


def reported_size(method, cfg, env, num_tasks: int) -> int:
  """The model size ``method``'s ``end_task`` reports after ``num_tasks`` tasks, through the
  trainer's own task context."""
  trainer = make_trainer(cfg, env, method)
  state = trainer.init(jax.random.key(0)).replace(tasks_begun=jnp.int32(num_tasks))
  _, metrics = trainer.end_task(state, jnp.int32(num_tasks - 1))
  return int(metrics[base.POLICY_PARAMS])


def test_finetune_tool_starts_as_the_reference_retraining():
  """A task-end hook's ``ctx.finetune``: the initial temperature and the target critic a
  copy of the critic (checked with 0 updates, where it returns its starting point)."""

  def end_task(params, state, ctx):
    params = ctx.finetune(params, state, ctx.replay, ctx.task_id, ctx.key, 0)
    return params, state, {base.POLICY_PARAMS: base.actor_size(params.actor, ctx.num_tasks)}

  _, _, ended = run_tasks(base.fine_tuning("probe", end_task=end_task), 1)
  params = ended[0].learner.params
  np.testing.assert_allclose(np.exp(params.log_alpha), CFG.sac.init_temperature, rtol=1e-6)
  chex.assert_trees_all_equal(params.target_critic, params.critic)


def test_masked_optimizer_masks_the_gradients_and_keeps_the_inner_state():
  """``base.masked(mask)``: the inner Adam's updates of the masked gradients, and the inner
  Adam's state (the mask is stateless, so a checkpoint's layout is Adam's)."""
  params = {"a": jnp.ones(3), "b": jnp.ones(2)}
  grads = {"a": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5, 0.25])}

  def mask(g, method_state, task_id):
    return {"a": g["a"] * method_state, "b": g["b"] * task_id}

  keep_a = jnp.array([1.0, 0.0, 1.0])
  optimizer = base.masked(mask)(SACConfig(actor_lr=0.1))
  state = optimizer.init(params)
  updates, state = optimizer.update(grads, state, params, method_state=keep_a, task_id=0.0)
  adam = optax.adam(0.1)
  expected, adam_state = adam.update(mask(grads, keep_a, 0.0), adam.init(params), params)
  chex.assert_trees_all_equal((updates, state), (expected, adam_state))
  assert float(updates["a"][1]) == 0.0 and float(jnp.abs(updates["b"]).sum()) == 0.0


def test_the_traced_options_are_the_states_sweepable_coefficients():
  """Each options class's ``TRACED`` fields are exactly the ``coefs`` of the method's state, and
  ``rewirejax sweep`` knows every one of them."""
  from rewirejax.sweep import SWEEPABLE

  env = TargetReachEnv()
  for name, entry in METHODS.items():
    traced = getattr(entry.options, "TRACED", ())
    state = jax.eval_shape(make_trainer(CFG, env, make_method(name, CFG)).init, jax.random.key(0))
    coefs = getattr(state.method_state, "coefs", None)
    assert (coefs._fields if coefs is not None else ()) == traced, name
    assert set(traced) <= set(SWEEPABLE.values()), name


@pytest.mark.parametrize(
  "name, values, message",
  [
    ("ewc", {"coeff": 1.0}, r"ewc has no options \['coeff'\]; valid: \['coef', 'fisher_samples'\]"),
    ("ft_l2", {"coef": -1.0}, "the coefficient must be >= 0"),
    ("packnet", {"keep_fraction": 0.0}, "keep_fraction must be in"),
    ("pnn", {"width": 0}, "width must be >= 1"),
    ("ft_1", {"coef": 1.0}, r"ft_1 has no options \['coef'\]; valid: \[\]"),
  ],
)
def test_bad_method_options_are_one_line_errors(name, values, message):
  with pytest.raises(ValueError, match=message):
    make_method(name, CFG, **values)


def test_options_may_be_given_whole_and_must_be_the_methods_class():
  from rewirejax.methods import EWCConfig, FTL2Config

  method = make_method("ewc", CFG, options=EWCConfig(coef=3.0))
  assert method.name == "ewc"
  with pytest.raises(ValueError, match="ewc takes EWCConfig, got FTL2Config"):
    make_method("ewc", CFG, options=FTL2Config())
  with pytest.raises(ValueError, match="either options or option values"):
    make_method("ewc", CFG, options=EWCConfig(), coef=1.0)


def test_same_options_compares_what_the_options_resolve_to():
  """A result file's options equal today's when they resolve to the same options class, so a
  value spelled out at its default matches one left out (and a changed value does not)."""
  from rewirejax.methods import same_options

  assert same_options("rewire", {"distill_coef": 1e-5, "align_coef": 100.0}, {"align_coef": 100})
  assert not same_options("rewire", {"align_coef": 100.0}, {"align_coef": 1.0})
  assert same_options("ft_1", {}, {})
  assert not same_options("ewc", {"coef": 1.0}, {"coef": 1.0, "gone": 2})  # Compared as dicts.
  assert same_options("ewc", {"coef": 1.0, "gone": 2}, {"coef": 1.0, "gone": 2})


def test_a_method_spec_reads_each_value_as_its_fields_type():
  """``name+field=value``: the registered name and typed option values, checked against a
  hand-written expectation; anything else is a one-line error naming the part."""
  from rewirejax.methods import parse_method_spec

  assert parse_method_spec("ft_1") == ("ft_1", {})
  spec = "rewire+distill=mse+distill_coef=1e-3+num_modes=1+align=false"
  expected = {"distill": "mse", "distill_coef": 1e-3, "num_modes": 1, "align": False}
  name, values = parse_method_spec(spec)
  assert name == "rewire" and values == expected
  assert [type(values[k]) for k in expected] == [str, float, int, bool]
  errors = {
    "nosuch+a=1": "Unknown method",
    "rewire+distil=mse": "'distil=mse' is not field=value",
    "rewire+distill": "'distill' is not field=value",
    "rewire+TRACED=x": "'TRACED=x' is not field=value",
    "ft_1+coef=1": "'coef=1' is not field=value of ft_1's options",
    "rewire+num_modes=two": "num_modes takes an integer",
    "rewire+num_modes=1.5": "num_modes takes an integer",
    "rewire+align=yes": "align takes true or false",
    "rewire+distill=foo": "'rewire\\+distill=foo': distill must be 'kl' or 'mse'",
    "ewc+coef=-1": "'ewc\\+coef=-1': the coefficient must be >= 0",
  }
  for bad, message in errors.items():
    with pytest.raises(ValueError, match=message):
      parse_method_spec(bad)


def _make_frozen_after_first_task(cfg, options: base.NoOptions) -> base.Method:
  """A new baseline in a few lines: FT-1 whose actor learns the first task only (its
  gradients masked to zero after it), registered below without touching the trainer."""
  del cfg, options

  def mask(grads, method_state, task_id):
    del method_state
    return jax.tree.map(lambda g: g * (task_id == 0), grads)

  return base.fine_tuning("frozen_after_first", actor_optimizer=base.masked(mask))


def test_a_new_baseline_is_one_factory_and_a_registry_entry(monkeypatch):
  from rewirejax.methods import MethodEntry

  entry = MethodEntry(base.NoOptions, _make_frozen_after_first_task)
  monkeypatch.setitem(METHODS, "frozen_after_first", entry)
  trainer, _, ended = run_tasks(make_method("frozen_after_first", CFG), 2)
  actor = lambda state: state.learner.params.actor  # noqa: E731
  chex.assert_trees_all_equal(actor(ended[1]), actor(ended[0]))  # Task 1 trained nothing.
  _, metrics = jax.jit(trainer.end_task)(ended[1], jnp.int32(1))
  one = ft_1_policy_size(TargetReachEnv().observation_size, TargetReachEnv().action_size, CFG)
  assert int(metrics[base.POLICY_PARAMS]) == one  # The default end_task reports the size.


def test_an_end_task_that_reports_no_model_size_is_refused():
  method = base.fine_tuning("sizeless", end_task=lambda params, state, ctx: (params, state, {}))
  trainer = make_trainer(CFG, TargetReachEnv(), method)
  state = jax.eval_shape(trainer.init, jax.random.key(0))
  with pytest.raises(ValueError, match="sizeless's end_task must report 'policy_params'"):
    jax.eval_shape(trainer.end_task, state, jnp.int32(0))
