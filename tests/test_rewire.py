"""The rewiring method: alignment algebra, cached wirings, multi-mode loss, distillation, mode
selection and rollback, model size; checked against slow, explicit references."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rewirejax import layers
from rewirejax.config import RewireConfig, RunConfig, SACConfig
from rewirejax.envs.toy import TargetReachEnv
from rewirejax.methods import base, make_method
from rewirejax.methods import rewire as rw
from rewirejax.networks import make_sac_networks, training_forward
from rewirejax.sac import losses_of
from rewirejax.trainer import make_trainer
from tests.contexts import task_context
from tests.test_layers import straight_through_matrix

OBS, ACT, WIDTH = 3, 2, 8
CFG = RunConfig(
  steps_per_task=8 * 40,
  max_tasks=4,
  epochs_per_chunk=4,
  num_eval_envs=4,
  num_eval_rollouts=1,
  sac=SACConfig(
    batch_size=16,
    num_envs=8,
    warmup_transitions=16,
    replay_capacity=400,
    hidden_sizes=(WIDTH,) * 3,
  ),
)


def _actor(num_modes=3, key=0):
  nets = make_sac_networks(
    OBS, ACT, 4, (WIDTH,) * 3, num_modes=num_modes, tau=1.0, alignment_adapters=True
  )
  params = nets.actor.init(jax.random.key(key), jnp.zeros((1, OBS)), jnp.int32(0))
  return nets, params


def _random_order(key, n=WIDTH):
  return jax.random.permutation(key, n).astype(jnp.int32)


def test_exact_alignment_reproduces_old_tasks_only_after_refinement():
  """W_new = M[i][:, o], b_new = m[o] for random hard adapters: the refined cached wirings give
  the old task's outputs exactly; the unrefined ones do not."""
  nets, old = _actor(key=1)
  keys = jax.random.split(jax.random.key(2), 16)
  old_wirings = jnp.stack([_random_order(k) for k in keys[:3]])  # Task 0's cached wiring.
  outs = jnp.stack([_random_order(k) for k in keys[3:6]])
  ins = jnp.stack([jnp.arange(WIDTH, dtype=jnp.int32)] + [_random_order(k) for k in keys[6:8]])
  new = old
  for l in range(3):
    name = f"hidden_{l}"
    kernel, bias = old["params"][name]["kernel"], old["params"][name]["bias"]
    kernel = kernel[:, outs[l]]
    if l > 0:
      kernel = kernel[ins[l], :]
    new = rw._replace_layers(new, {name: {"kernel": kernel, "bias": bias[outs[l]]}})
  obs = jax.random.normal(keys[8], (5, OBS))
  task = jnp.int32(0)
  before = nets.actor.apply(rw.with_wirings(old, old_wirings), obs, task)
  refined = rw.refine_wirings(old_wirings[None], outs, ins)[0]
  after = nets.actor.apply(rw.with_wirings(new, refined), obs, task)
  stale = nets.actor.apply(rw.with_wirings(new, old_wirings), obs, task)
  chex.assert_trees_all_close(after, before, rtol=1e-5, atol=1e-6)
  assert not np.allclose(stale[0], before[0], atol=1e-3)
  # The refinement is the composition written in the docstring, checked index by index.
  for l in range(3):
    nxt = ins[l + 1] if l < 2 else np.arange(WIDTH)
    expected = [int(np.argsort(outs[l])[old_wirings[l][nxt[j]]]) for j in range(WIDTH)]
    np.testing.assert_array_equal(refined[l], expected)
  # Adapters whose matrices give W_new = P'^T M P'' (torch layout): their wirings are the
  # inverses of the gathers; adapter_orders reads the gathers back, and L_SP is 0 at W_new.
  adapted = new
  params = dict(new["params"])
  for l in range(3):
    params[f"adapter_out_{l}"] = layers.scores_of(layers.invert(outs[l]))
    if l > 0:
      params[f"adapter_in_{l}"] = layers.scores_of(layers.invert(ins[l]))
  adapted = {**new, "params": params}
  got_out, got_in = rw.adapter_orders(adapted)
  np.testing.assert_array_equal(got_out, outs)
  np.testing.assert_array_equal(got_in, ins)
  anchor = rw.hidden_weights(old)
  assert float(rw.alignment_loss(adapted, anchor, 0.1, align=True)) < 1e-10
  assert float(rw.alignment_loss(rw.reset_adapters(adapted), anchor, 0.1, align=True)) > 1.0


def test_alignment_gradient_reaches_the_adapters_and_weights():
  _, actor = _actor()
  anchor = rw.hidden_weights(actor)
  moved = jax.tree.map(lambda x: x + 0.1, actor)
  grads = jax.grad(lambda p: rw.alignment_loss(p, anchor, 0.1, align=True))(moved)["params"]
  assert float(jnp.abs(grads["hidden_1"]["kernel"]).sum()) > 0
  assert float(jnp.abs(grads["adapter_out_1"]).sum()) > 0
  assert float(jnp.abs(grads["adapter_in_2"]).sum()) > 0
  # Without alignment it is plain L2: 2 (W - M), no adapter involved.
  plain = jax.grad(lambda p: rw.alignment_loss(p, anchor, 0.1, align=False))(moved)["params"]
  np.testing.assert_allclose(plain["hidden_0"]["kernel"], 0.2, rtol=1e-5)
  assert float(jnp.abs(plain["adapter_out_0"]).sum()) == 0


def _two_steps(optimizer, params, grads):
  """The updates of two steps with the same gradients (Adam's second step differs from its
  first through its moments)."""
  extra = {"method_state": (), "task_id": jnp.int32(0)}
  state = optimizer.init(params)
  first, state = optimizer.update(grads, state, params, **extra)
  second, state = optimizer.update(grads, state, params, **extra)
  return first, second


def test_adapter_sgd_option_steps_the_adapters_by_minus_lr_times_the_gradient():
  """``adapter_optimizer="sgd"``: the adapters' updates are ``-adapter_lr * g`` (plain SGD, no
  moments); every other leaf gets the actor's Adam, as by default."""
  _, actor = _actor()
  grads = jax.tree.map(lambda x: jnp.linspace(-1.0, 2.0, x.size).reshape(x.shape), actor)
  sgd = rw.actor_optimizer(RewireConfig(adapter_optimizer="sgd", adapter_lr=0.03), CFG.sac)
  adam = optax.adam(CFG.sac.actor_lr)
  for step, (ours, adams) in enumerate(
    zip(_two_steps(sgd, actor, grads), _two_steps(adam, actor, grads), strict=True)
  ):
    for name, leaf in ours["params"].items():
      if name.startswith("adapter_"):
        np.testing.assert_allclose(
          leaf, -0.03 * grads["params"][name], rtol=1e-6, err_msg=f"{step}"
        )
      else:
        chex.assert_trees_all_close(leaf, adams["params"][name])
  assert any(n.startswith("adapter_") for n in ours["params"])


def test_adapters_share_the_actors_adam_by_default():
  _, actor = _actor()
  grads = jax.tree.map(lambda x: jnp.linspace(-1.0, 2.0, x.size).reshape(x.shape), actor)
  ours = _two_steps(rw.actor_optimizer(RewireConfig(), CFG.sac), actor, grads)
  chex.assert_trees_all_equal(ours, _two_steps(optax.adam(CFG.sac.actor_lr), actor, grads))


@pytest.mark.parametrize(
  "options, message",
  [
    ({"adapter_optimizer": "adamw"}, "adapter_optimizer must be"),
    ({"adapter_lr": -1.0}, "adapter_lr"),
  ],
)
def test_bad_adapter_options_are_refused(options, message):
  with pytest.raises(ValueError, match=message):
    RewireConfig(**options).validate()


@pytest.mark.parametrize("form", ["norm", "correlation"])
def test_alignment_loss_equals_the_matrix_form_with_straight_through_adapters(form):
  """Eq. 11 ("norm") and the reference's ``-2 sum((zp^T M ap) * W) + sum W^2``
  ("correlation") written with explicit [n, n] straight-through matrices, as the reference's
  torch code (M [out, in]): same values and same gradients for the weights and every
  adapter."""
  _, actor = _actor()
  anchor = rw.hidden_weights(actor)
  keys = iter(jax.random.split(jax.random.key(3), 32))
  moved = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(next(keys), x.shape), actor)
  tau = 0.1

  def matrix_form(actor_params):
    params = actor_params["params"]
    total = 0.0
    for l in range(3):
      name = f"hidden_{l}"
      zp = straight_through_matrix(params[f"adapter_out_{l}"], tau)
      target = zp.T @ anchor[name]["kernel"].T  # Torch layout [out, in].
      if l > 0:
        target = target @ straight_through_matrix(params[f"adapter_in_{l}"], tau)
      kernel, bias = target.T, zp.T @ anchor[name]["bias"]
      for current, target in ((params[name]["kernel"], kernel), (params[name]["bias"], bias)):
        if form == "norm":
          total += jnp.sum((current - target) ** 2)
        else:
          total += jnp.sum(current**2) - 2.0 * jnp.sum(target * current)
    return total

  def ours(p):
    return rw.alignment_loss(p, anchor, tau, align=True, form=form)

  np.testing.assert_allclose(float(ours(moved)), float(matrix_form(moved)), rtol=1e-5)
  chex.assert_trees_all_close(
    jax.grad(ours)(moved), jax.grad(matrix_form)(moved), rtol=1e-4, atol=1e-5
  )
  adapter_grad = jax.grad(ours)(moved)["params"]["adapter_out_1"]
  assert float(jnp.abs(adapter_grad).sum()) > 0


def test_the_two_alignment_forms_differ_by_the_anchor_norm_and_in_the_adapter_gradient():
  _, actor = _actor()
  anchor = rw.hidden_weights(actor)
  keys = iter(jax.random.split(jax.random.key(4), 32))
  moved = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(next(keys), x.shape), actor)
  norm, correlation = (
    (lambda p, f=f: rw.alignment_loss(p, anchor, 0.1, align=True, form=f))
    for f in ("norm", "correlation")
  )
  anchor_norm = sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(anchor))
  np.testing.assert_allclose(float(norm(moved)) - float(correlation(moved)), anchor_norm, rtol=1e-5)
  g_norm, g_corr = jax.grad(norm)(moved)["params"], jax.grad(correlation)(moved)["params"]
  np.testing.assert_allclose(g_norm["hidden_1"]["kernel"], g_corr["hidden_1"]["kernel"], atol=1e-5)
  assert not np.allclose(g_norm["adapter_out_1"], g_corr["adapter_out_1"], atol=1e-5)


def test_distillation_forms_by_hand():
  mu_t, log_std_t = jnp.array([[0.5, -1.0]]), jnp.log(jnp.array([[2.0, 0.5]]))
  mu, log_std = jnp.array([[0.0, 0.0]]), jnp.log(jnp.array([[1.0, 1.0]]))
  # KL(N(m_t, s_t^2) || N(m, s^2)) = log(s/s_t) + (s_t^2 + (m_t-m)^2) / (2 s^2) - 1/2.
  kl = sum(
    np.log(s / st) + (st**2 + (mt - m) ** 2) / (2 * s**2) - 0.5
    for mt, st, m, s in [(0.5, 2.0, 0.0, 1.0), (-1.0, 0.5, 0.0, 1.0)]
  )
  np.testing.assert_allclose(rw.distillation(mu_t, log_std_t, mu, log_std, "kl"), kl, rtol=1e-6)
  mse = 0.25 + 1.0 + np.log(2.0) ** 2 + np.log(0.5) ** 2
  np.testing.assert_allclose(rw.distillation(mu_t, log_std_t, mu, log_std, "mse"), mse, rtol=1e-6)
  assert float(rw.distillation(mu, log_std, mu, log_std, "kl")) == 0.0
  # The teacher is held fixed.
  grad_teacher = jax.grad(lambda m: rw.distillation(m, log_std_t, mu, log_std, "kl"))(mu_t)
  assert float(jnp.abs(grad_teacher).sum()) == 0.0


def _batch(key):
  k = jax.random.split(key, 3)
  from rewirejax.types import Transition

  obs = jax.random.normal(k[0], (16, OBS))
  act = jax.random.uniform(k[1], (16, ACT), minval=-1, maxval=1)
  return Transition(obs, act, jnp.ones(16), obs + 0.1, jnp.zeros(16), jnp.zeros(16))


@pytest.mark.parametrize(
  "num_modes,dropout,mode_update",
  [(1, 0.0, "all"), (3, 0.0, "all"), (3, 0.1, "all"), (3, 0.0, "sample")],
)
def test_vmapped_mode_loss_is_the_mean_of_per_mode_losses(num_modes, dropout, mode_update):
  """Without noise "all" reuses the modes' own outputs as teachers; with dropout it runs a
  plain teacher forward. Either way: the mean of K losses computed one by one, and its
  gradient. "sample": the loss of the one mode drawn from the key."""
  method = make_method(
    "rewire", CFG, num_modes=num_modes, distill_coef=0.3, dropout=dropout, mode_update=mode_update
  )
  nets = method.make_networks(OBS, ACT, CFG)
  params = base.networks_lib.init_agent_params(nets, jax.random.key(0), OBS, ACT, 1.0)
  # Every mode of every layer its own random scores: the modes (and teachers) all differ.
  layer_keys = iter(jax.random.split(jax.random.key(9), 3))
  fields = {
    f"hidden_{l}": {"scores": jax.random.uniform(next(layer_keys), (num_modes, WIDTH))}
    for l in range(3)
  }
  params = params._replace(actor=rw._replace_layers(params.actor, fields))
  sac_losses = losses_of(nets, CFG.sac, ACT)
  wrapped = method.make_losses(sac_losses, nets, CFG)
  batch, key, task = _batch(jax.random.key(4)), jax.random.key(5), jnp.int32(1)
  state = method.init(jax.random.key(1), params)  # First task: no alignment pull yet.
  loss, aux = wrapped.actor(params.actor, params, state, batch, task, key)

  def one_by_one(actor_params):
    per_mode = []
    for k in range(num_modes):
      key_mode = jax.random.fold_in(key, 1000 + k)
      mode_losses = sac_losses(training_forward(nets.actor, k))
      base_loss, base_aux = mode_losses.actor(actor_params, params, None, batch, task, key_mode)
      distill = 0.0
      if num_modes > 1:
        offset = jax.random.randint(jax.random.fold_in(key, 2 + k), (), 1, num_modes)
        teacher = (k + int(offset)) % num_modes
        dropout_key = jax.random.fold_in(key, 3000 + teacher)  # The teacher runs in train mode.
        mu_t, log_std_t = nets.actor.apply(
          actor_params, batch.obs, task, teacher, train=True, rngs={"dropout": dropout_key}
        )
        distill = rw.distillation(mu_t, log_std_t, base_aux.mu, base_aux.log_std, "kl")
      per_mode.append(base_loss + 0.3 * distill)
    return jnp.stack(per_mode)

  def expected(actor_params):
    if mode_update == "sample":
      drawn = jax.random.randint(jax.random.fold_in(key, 1), (), 0, num_modes)
      return one_by_one(actor_params)[drawn]
    return jnp.mean(one_by_one(actor_params))

  per_mode = np.asarray(one_by_one(params.actor))
  np.testing.assert_allclose(float(loss), float(expected(params.actor)), rtol=1e-5)
  grads = jax.grad(lambda a: wrapped.actor(a, params, state, batch, task, key)[0])(params.actor)
  chex.assert_trees_all_close(grads, jax.grad(expected)(params.actor), rtol=1e-4, atol=1e-6)
  if num_modes == 1:
    assert float(aux.metrics["rewire/distill"]) == 0.0
  else:
    assert float(aux.metrics["rewire/distill"]) > 0.0
    assert len(set(np.round(per_mode, 5))) == num_modes  # The modes really differ.


def _context(task_id, key, tools):
  return task_context(task_id, key, evaluate=tools.evaluate)


class _FakeTools:
  """``evaluate`` returns the first score of hidden_0's mode-0 row, shifted by ``offset``."""

  def __init__(self, offset=0.0):
    self.networks, self.init_actor, self.init_critic = None, None, None
    self.offset = offset

  def evaluate(self, actor, task_id, key):
    del task_id, key
    return actor["params"]["hidden_0"]["scores"][0, 0] + self.offset


def test_mode_selection_keeps_the_best_mode_and_caches_its_wiring():
  method = make_method("rewire", CFG)
  nets = method.make_networks(OBS, ACT, CFG)
  params = base.networks_lib.init_agent_params(nets, jax.random.key(0), OBS, ACT, 1.0)
  state = method.init(jax.random.key(1), params)
  params, state = method.begin_task(
    params, state, _context(jnp.int32(0), jax.random.key(2), _FakeTools())
  )
  # Three modes with different wirings; mode 2 has the largest first score.
  wirings = [
    jnp.stack([_random_order(jax.random.key(10 * m + l)) for l in range(3)]) for m in range(3)
  ]
  scores = {}
  for l in range(3):
    rows = jnp.stack([layers.scores_of(wirings[m][l]) for m in range(3)])
    rows = rows.at[:, 0].set(jnp.array([0.2, 0.1, 0.9]) if l == 0 else rows[:, 0])
    scores[f"hidden_{l}"] = {"scores": rows}
  actor = rw._replace_layers(params.actor, scores)
  expected = rw.mode_wirings(actor, 2)
  params = params._replace(actor=actor)
  params, state, metrics = method.end_task(
    params, state, _context(jnp.int32(0), jax.random.key(3), _FakeTools())
  )
  np.testing.assert_allclose(metrics["rewire/mode_returns"], [0.2, 0.1, 0.9], rtol=1e-6)
  assert int(state.chosen_mode) == 2 and not bool(metrics["rewire/rolled_back"])
  assert state.wirings.dtype == jnp.int32 and state.wirings.shape == (4, 3, WIDTH)
  np.testing.assert_array_equal(state.wirings[0], expected)
  for m in range(3):  # Every mode continues from the chosen wiring.
    np.testing.assert_array_equal(rw.mode_wirings(params.actor, m), expected)


def test_no_rollback_and_no_regulariser_in_the_first_task():
  """The first task's start is the random initialisation: nothing to roll back to (as the
  reference); the regulariser starts with the second task, cache or no cache."""
  for options in ({}, {"cache_wirings": False, "num_modes": 1, "align": False}):
    method = make_method("rewire", CFG, **options)
    nets = method.make_networks(OBS, ACT, CFG)
    params = base.networks_lib.init_agent_params(nets, jax.random.key(0), OBS, ACT, 1.0)
    state = method.init(jax.random.key(1), params)
    task = jnp.int32(0)
    params, state = method.begin_task(
      params, state, _context(task, jax.random.key(2), _FakeTools(100.0))
    )
    moved = jax.tree.map(lambda x: x + 0.05 if x.dtype == jnp.float32 else x, params.actor)
    rc = RewireConfig(**options)
    assert float(rw.alignment_penalty(moved, state, rc)[0]) == 0.0
    params, state, metrics = method.end_task(
      params._replace(actor=moved), state, _context(task, jax.random.key(3), _FakeTools())
    )
    assert not bool(metrics["rewire/rolled_back"])
    moved = jax.tree.map(lambda x: x + 0.05 if x.dtype == jnp.float32 else x, params.actor)
    assert float(rw.alignment_penalty(moved, state, rc)[0]) > 0.0


def test_the_modes_are_measured_on_the_episodes_of_the_start_of_the_task():
  class KeyTools(_FakeTools):
    def evaluate(self, actor, task_id, key):  # A "return" that depends on the episodes only.
      return jax.random.uniform(key)

  method = make_method("rewire", CFG)
  nets = method.make_networks(OBS, ACT, CFG)
  params = base.networks_lib.init_agent_params(nets, jax.random.key(0), OBS, ACT, 1.0)
  state = method.init(jax.random.key(1), params)._replace(finished_tasks=jnp.int32(1))
  params, state = method.begin_task(
    params, state, _context(jnp.int32(1), jax.random.key(2), KeyTools())
  )
  _, _, metrics = method.end_task(
    params, state, _context(jnp.int32(1), jax.random.key(3), KeyTools())
  )
  np.testing.assert_array_equal(metrics["rewire/mode_returns"], state.start_return)


def test_rollback_restores_the_start_of_the_task_exactly():
  method = make_method("rewire", CFG)
  nets = method.make_networks(OBS, ACT, CFG)
  params = base.networks_lib.init_agent_params(nets, jax.random.key(0), OBS, ACT, 1.0)
  state = method.init(jax.random.key(1), params)._replace(finished_tasks=jnp.int32(1))
  task = jnp.int32(1)
  params, state = method.begin_task(
    params, state, _context(task, jax.random.key(2), _FakeTools(100.0))
  )
  start = params.actor
  trained = jax.tree.map(lambda x: x + 0.05 if x.dtype == jnp.float32 else x, start)
  params = params._replace(actor=trained)
  params, state, metrics = method.end_task(
    params, state, _context(task, jax.random.key(3), _FakeTools())
  )
  assert bool(metrics["rewire/rolled_back"]) and int(state.chosen_mode) == -1
  restored = params.actor["params"]
  for l in range(3):
    for field in ("kernel", "bias"):
      np.testing.assert_array_equal(
        restored[f"hidden_{l}"][field], start["params"][f"hidden_{l}"][field]
      )
  np.testing.assert_array_equal(rw.mode_wirings(params.actor, 0), rw.mode_wirings(start, 0))
  np.testing.assert_array_equal(restored["head_kernel"][1], start["params"]["head_kernel"][1])
  np.testing.assert_array_equal(restored["head_bias"][1], start["params"]["head_bias"][1])


def test_cached_wiring_reproduces_the_policy_at_task_end_bit_for_bit():
  """Train two toy tasks; afterwards task 0 is evaluated through its cached, refined wiring, and
  right at its end through the cache the policy is exactly the trained one."""
  method = make_method("rewire", CFG, align_coef=1.0)
  trainer = make_trainer(CFG, TargetReachEnv(num_tasks=4), method)
  begin, warmup = jax.jit(trainer.begin_task), jax.jit(trainer.warmup)
  chunk, end = jax.jit(trainer.train_chunk), jax.jit(trainer.end_task)
  state = jax.jit(trainer.init)(jax.random.key(0))
  obs = jax.random.normal(jax.random.key(9), (6, OBS))
  nets = method.make_networks(OBS, ACT, CFG)
  for t in range(2):
    task = jnp.int32(t)
    state = warmup(begin(state, task), task)[0]
    state, _ = chunk(state, task)
    state, _ = end(state, task)
    params, mstate = state.learner.params, state.method_state
    assert bool(mstate.cached[t])
    at_end = nets.actor.apply(params.actor, obs, task)
    via_cache = nets.actor.apply(method.eval_params(params, mstate, task), obs, task)
    chex.assert_trees_all_equal(via_cache, at_end)
  # Task 1 trained the shared weights, so task 0's wiring was refined by task 1's adapters.
  assert np.isfinite(np.asarray(rw.alignment_loss(params.actor, mstate.anchor, 0.1, True)))


def test_model_size_of_the_default_halfcheetah_network():
  """The paper's count (2.1x FT-1 with the reference's 4 task slots)."""
  cfg = dataclasses.replace(CFG, max_tasks=8, sac=SACConfig())
  ft_1 = base.ft_1_policy_size(17, 6, cfg)
  sizes = {}
  for slots in (4, 0):
    method = make_method("rewire", cfg, task_slots=slots)
    nets = method.make_networks(17, 6, cfg)
    params = jax.eval_shape(
      lambda: base.networks_lib.init_agent_params(nets, jax.random.key(0), 17, 6, 1.0)
    )
    state = jax.eval_shape(method.init, jax.random.key(0), params)
    assert state.wirings.shape == (slots or 8, 3, 256) and state.wirings.dtype == jnp.int32
    size = rw.policy_size(RewireConfig(task_slots=slots), slots or 8, params.actor, state, 8)
    sizes[slots] = size / ft_1
  assert ft_1 == (17 * 256 + 256) + 2 * (256 * 256 + 256) + (256 * 12 + 12)
  np.testing.assert_allclose(sizes[4], 2.12, atol=0.01)  # Paper: 2.1.
  assert sizes[4] < sizes[0] < 2.3


def test_modes_that_start_equal_part_during_training():
  """All K modes start at the identity wiring; per-mode action noise makes them diverge."""
  method = make_method("rewire", CFG, rollback_if_worse=False)
  trainer = make_trainer(CFG, TargetReachEnv(num_tasks=4), method)
  state = jax.jit(trainer.init)(jax.random.key(0))
  task = jnp.int32(0)
  state = jax.jit(trainer.begin_task)(state, task)
  state, _ = jax.jit(trainer.warmup)(state, task)
  scores = state.learner.params.actor["params"]["hidden_0"]["scores"]
  np.testing.assert_array_equal(scores[0], scores[1])
  state, _ = jax.jit(trainer.train_chunk)(state, task)
  scores = state.learner.params.actor["params"]["hidden_0"]["scores"]
  assert not np.allclose(scores[0], scores[1])


def test_ablation_ladder_switches_off_the_named_parts():
  from rewirejax.methods import REWIRE_ABLATIONS

  assert set(REWIRE_ABLATIONS) == {
    "rewire_base",
    "rewire_cache",
    "rewire_cache_modes",
    "rewire_cache_align",
  }
  for name in REWIRE_ABLATIONS:
    method = make_method(name, CFG, align_coef=3.0)
    assert method.name == name
  base_nets = make_method("rewire_base", CFG).make_networks(OBS, ACT, CFG)
  assert base_nets.actor.num_modes == 1 and not base_nets.actor.alignment_adapters
  full = make_method("rewire", CFG).make_networks(OBS, ACT, CFG)
  assert full.actor.num_modes == 3 and full.actor.alignment_adapters


def test_noiseless_variant_drops_the_reference_presets_noise_and_dropout():
  noisy = {"gumbel_noise": 0.1, "dropout": 0.1}  # What a preset may pass.
  nets = make_method("rewire_noiseless", CFG, **noisy).make_networks(OBS, ACT, CFG)
  assert nets.actor.gumbel_noise == 0.0 and nets.actor.dropout == 0.0
  nets = make_method("rewire", CFG, **noisy).make_networks(OBS, ACT, CFG)
  assert nets.actor.gumbel_noise == 0.1 and nets.actor.dropout == 0.1


def test_dropout_and_gumbel_noise_act_only_when_asked():
  plain = make_sac_networks(OBS, ACT, 2, (WIDTH,) * 3, num_modes=2)
  noisy = make_sac_networks(OBS, ACT, 2, (WIDTH,) * 3, num_modes=2, gumbel_noise=0.5, dropout=0.3)
  params = plain.actor.init(jax.random.key(0), jnp.zeros((1, OBS)), jnp.int32(0))
  obs, task = jax.random.normal(jax.random.key(1), (64, OBS)), jnp.int32(0)
  rngs = {"noise": jax.random.key(2), "dropout": jax.random.key(3)}
  reference = plain.actor.apply(params, obs, task)
  # Evaluation (neither flag) is the plain network, bit for bit.
  chex.assert_trees_all_equal(noisy.actor.apply(params, obs, task, rngs=rngs), reference)
  dropped = noisy.actor.apply(params, obs, task, train=True, rngs=rngs)
  assert not np.allclose(dropped[0], reference[0])
  # Gumbel noise changes the hard wiring of the forward pass (dropout off here).
  gumbel_only = make_sac_networks(OBS, ACT, 2, (WIDTH,) * 3, num_modes=2, gumbel_noise=0.5)
  rewired = gumbel_only.actor.apply(params, obs, task, noisy_wiring=True, rngs=rngs)
  assert not np.allclose(rewired[0], reference[0])
  grads = jax.grad(
    lambda p: jnp.sum(gumbel_only.actor.apply(p, obs, task, noisy_wiring=True, rngs=rngs)[0])
  )(params)
  assert float(jnp.abs(grads["params"]["hidden_1"]["scores"]).sum()) > 0


def test_reference_preset_turns_on_the_reference_stochasticity():
  import sys
  from pathlib import Path

  sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
  from configs import brax as brax_configs

  hc = brax_configs.method_config("halfcheetah/forgetting", "rewire", "reference")
  assert hc.gumbel_noise == 0.1 and hc.dropout == 0.0 and hc.task_slots == 4
  assert hc.align_loss == "correlation" and not hc.mode_per_env
  ant = brax_configs.method_config("ant/transfer", "rewire", "reference")
  assert ant.gumbel_noise == 0.0 and ant.dropout == 0.1 and ant.tau == 0.1
  paper = brax_configs.method_config("ant/transfer", "rewire", "paper")
  assert paper == RewireConfig(distill_coef=1e-5, align_coef=0.1)
  # What result files record: the values that differ from the defaults.
  assert brax_configs.method_options("ant/transfer", "rewire", "paper") == {"align_coef": 0.1}
  method = make_method("rewire", CFG, options=ant)  # Builds and trains one chunk on the toy env.
  trainer = make_trainer(CFG, TargetReachEnv(num_tasks=4), method)
  state = jax.jit(trainer.init)(jax.random.key(0))
  state = jax.jit(trainer.begin_task)(state, jnp.int32(0))
  state, _ = jax.jit(trainer.warmup)(state, jnp.int32(0))
  state, metrics = jax.jit(trainer.train_chunk)(state, jnp.int32(0))
  assert np.isfinite(float(metrics["actor/loss"]))


@pytest.mark.parametrize("mode_per_env", [True, False])
def test_acting_draws_a_mode_per_env_or_one_for_all(mode_per_env):
  """Each env's action equals that of one mode's policy; with ``mode_per_env=False`` all envs
  share the mode of the step (the reference's)."""
  method = make_method("rewire", CFG, mode_per_env=mode_per_env)
  nets = method.make_networks(OBS, ACT, CFG)
  params = base.networks_lib.init_agent_params(nets, jax.random.key(0), OBS, ACT, 1.0)
  fields = {
    f"hidden_{l}": {"scores": jax.random.uniform(jax.random.key(l), (3, WIDTH))} for l in range(3)
  }
  actor = rw._replace_layers(params.actor, fields)
  obs, task = jax.random.normal(jax.random.key(7), (64, OBS)), jnp.int32(0)
  per_mode = [nets.actor.apply(actor, obs, task, k)[0] for k in range(3)]
  used = set()
  for step in range(12):
    mu, _, _ = method.act(nets, actor, None, obs, task, jax.random.key(100 + step))
    modes = [
      next(k for k in range(3) if np.allclose(mu[e], per_mode[k][e], atol=1e-6)) for e in range(64)
    ]
    assert len(set(modes)) == (3 if mode_per_env else 1)
    used.update(modes)
  assert used == {0, 1, 2}


def test_a_repeated_task_in_training_is_evaluated_with_the_current_scores():
  """With task slots, task 2 reuses task 0's slot: while task 2 trains, its evaluation uses the
  scores being trained; task 0's own evaluation still uses the cached wiring."""
  method = make_method("rewire", CFG, task_slots=2, rollback_if_worse=False)
  nets = method.make_networks(OBS, ACT, CFG)
  params = base.networks_lib.init_agent_params(nets, jax.random.key(0), OBS, ACT, 1.0)
  state = method.init(jax.random.key(1), params)
  tools = _FakeTools()
  params, state = method.begin_task(params, state, _context(jnp.int32(0), jax.random.key(2), tools))
  params, state, _ = method.end_task(
    params, state, _context(jnp.int32(0), jax.random.key(3), tools)
  )
  params, state = method.begin_task(params, state, _context(jnp.int32(2), jax.random.key(4), tools))
  moved = rw.with_wirings(
    params.actor, jnp.stack([_random_order(jax.random.key(i)) for i in range(3)])
  )
  params = params._replace(actor=moved)
  chex.assert_trees_all_equal(method.eval_params(params, state, jnp.int32(2)), moved)
  cached = method.eval_params(params, state, jnp.int32(0))
  np.testing.assert_array_equal(rw.mode_wirings(cached, 0), state.wirings[0])
