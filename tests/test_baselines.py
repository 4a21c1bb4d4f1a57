"""The baselines' math and invariants: FT-L2, EWC, PackNet, PNN, CSP (against slow references)."""

import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from rewirejax.config import SACConfig
from rewirejax.envs.toy import TargetReachEnv
from rewirejax.methods import METHODS, base, make_method, regularized
from rewirejax.methods import packnet as packnet_lib
from rewirejax.methods import pnn as pnn_lib
from rewirejax.methods.base import ft_1_policy_size, make_mlp_networks
from rewirejax.train import train_sequence
from tests import golden
from tests.contexts import task_context
from tests.test_methods import CFG, reported_size, run_tasks

OPTIONS = {
  "packnet": {"finetune_updates": 20},
  "pnn": {"width": 6},
  "csp": {"alpha_candidates": 8, "critic_states": 32, "repeat_alpha": 3},
}


# ---------------------------------------------------------------------------------- FT-L2, EWC


def test_quadratic_penalty_matches_a_sum_over_weights_and_is_off_before_an_anchor():
  w = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[0.5]])}
  anchor = {"a": jnp.array([0.0, 1.0]), "b": jnp.array([[0.5]])}
  importance = {"a": jnp.array([2.0, 3.0]), "b": jnp.array([[7.0]])}
  coefs = regularized.AnchorCoefs(jnp.float32(0.1))
  on = regularized.AnchorState(anchor, importance, jnp.bool_(True), coefs)
  expected = 0.1 * (2.0 * 1.0 + 3.0 * 9.0 + 0.0)
  np.testing.assert_allclose(regularized.quadratic_penalty(w, on), expected, rtol=1e-6)
  assert regularized.quadratic_penalty(anchor, on) == 0.0  # Zero at the anchor.
  assert regularized.quadratic_penalty(w, on._replace(active=jnp.bool_(False))) == 0.0


def test_ewc_fisher_equals_the_hessian_of_the_policy_kl():
  """diag F = diag of d^2/dtheta'^2 KL(pi_theta || pi_theta') at theta' = theta (Gaussian
  policy), taken here by autodiff on the flattened parameters, one state at a time."""
  networks = make_mlp_networks(3, 2, dataclasses.replace(CFG, sac=SACConfig(hidden_sizes=(4,))))
  params = networks.actor.init(jax.random.key(1), jnp.zeros((1, 3)), jnp.int32(0))
  params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(2), x.shape), params)
  obs = jax.random.normal(jax.random.key(3), (5, 3))
  flat, unravel = ravel_pytree(params)

  def kl(flat_other, single_obs):
    mu0, log_std0 = networks.actor.apply(params, single_obs, 0)
    mu, log_std = networks.actor.apply(unravel(flat_other), single_obs, 0)
    var0, var = jnp.exp(2 * log_std0), jnp.exp(2 * log_std)
    return jnp.sum(log_std - log_std0 + (var0 + (mu0 - mu) ** 2) / (2 * var) - 0.5)

  hessian = jax.jit(jax.hessian(kl))
  hessian_diagonals = [np.diag(hessian(flat, o)) for o in obs]
  # Each state's Fisher floored, then the mean (the reference's order).
  reference = np.mean(np.maximum(hessian_diagonals, regularized.FISHER_FLOOR), axis=0)
  fisher, _ = ravel_pytree(regularized.estimate_fisher(networks, params, obs, 0, chunk=2))
  whole, _ = ravel_pytree(regularized.estimate_fisher(networks, params, obs, 0, chunk=5))
  np.testing.assert_allclose(fisher, whole, rtol=1e-5)  # The chunking changes nothing.
  np.testing.assert_allclose(fisher, reference, rtol=1e-3, atol=1e-6)
  assert np.all(fisher >= regularized.FISHER_FLOOR)


@pytest.mark.parametrize("name", ["ft_l2", "ewc"])
def test_anchor_is_the_last_tasks_policy_and_importance_accumulates(name):
  method = make_method(name, CFG, coef=0.5)
  _, _, after = run_tasks(method, 2)
  state = after[-1]
  chex.assert_trees_all_equal(state.method_state.anchor, after[1].learner.params.actor)
  first = after[0].method_state.importance
  second = state.method_state.importance
  if name == "ft_l2":
    assert all(np.all(x == 1.0) for x in jax.tree.leaves(second))
  else:  # EWC sums the Fishers: task 2's adds a positive amount to every weight.
    gains = jax.tree.map(lambda a, b: np.min(np.asarray(b - a)), first, second)
    assert min(jax.tree.leaves(gains)) >= regularized.FISHER_FLOOR * 0.99
  # At the anchor right after the task.
  assert regularized.quadratic_penalty(state.learner.params.actor, state.method_state) == 0.0


@pytest.mark.parametrize("name", ["ft_l2", "ewc"])
def test_the_pull_holds_the_second_task_near_the_first_tasks_weights(name):
  """In task 1 a large coefficient keeps the actor near task 0's weights, measured as the
  penalty does (``sum F (theta - theta*)^2``, F = 1 for FT-L2); FT-1 moves away."""
  _, _, pulled = run_tasks(make_method(name, CFG, coef=1e4), 2)
  _, _, free = run_tasks(make_method("ft_1", CFG), 2)
  importance = ravel_pytree(pulled[0].method_state.importance)[0]

  def weighted_move(ended):
    first, second = (ravel_pytree(s.learner.params.actor)[0] for s in ended)
    return float(jnp.sum(importance * (second - first) ** 2))

  moved_free, moved_pulled = weighted_move(free), weighted_move(pulled)
  assert moved_free > 0 and moved_pulled < 0.01 * moved_free, (moved_pulled, moved_free)


# ------------------------------------------------------------------------------------ PackNet


@pytest.mark.parametrize("owned_fraction", [0.3, 0.9])
def test_prune_gives_the_task_a_share_of_the_layer_from_the_free_weights(owned_fraction):
  """The reference's rule: ``kthvalue`` at ``int(size * (1 - keep))`` of ``|w * free|``, keep
  what is above it (all free weights when fewer than the share are left)."""
  rng = np.random.default_rng(0)
  weights = rng.normal(size=(6, 7)).astype(np.float32)
  owner = np.where(rng.random((6, 7)) < owned_fraction, 0, packnet_lib.FREE).astype(np.int32)
  new_owner = np.asarray(packnet_lib.prune_free_weights(weights, owner, 1, 0.25))
  free_magnitude = np.abs(weights * (owner == packnet_lib.FREE)).ravel()
  cutoff = np.sort(free_magnitude)[int(weights.size * 0.75) - 1]  # torch.kthvalue, 1-based.
  expected = np.where(free_magnitude > cutoff, 1, owner.ravel())
  np.testing.assert_array_equal(new_owner.ravel(), expected)
  assert np.sum(new_owner == 1) == min(42 - int(0.75 * 42), np.sum(owner == packnet_lib.FREE))


def test_packnet_freezes_earlier_weights_partitions_and_evaluates_with_owned_weights_only():
  method = make_method("packnet", CFG, **OPTIONS["packnet"])
  _, _, after = run_tasks(method, 3)
  state = after[-1]
  owners = state.method_state.owner
  for t in range(3):
    actor_t = after[t].learner.params.actor
    for s in range(t, 3):  # Weights task t owns are bit-identical after every later task.
      later = after[s].learner.params.actor
      jax.tree.map(
        lambda o, a, b, t=t: np.testing.assert_array_equal(
          np.where(o == t, a, 0), np.where(o == t, b, 0)
        ),
        owners,
        actor_t,
        later,
      )
  # A partition: every weight has exactly one owner among FREE, 0, 1, 2; each task owns some.
  values = np.concatenate([np.ravel(o) for o in jax.tree.leaves(owners)])
  assert set(np.unique(values)) <= {packnet_lib.FREE, 0, 1, 2}
  assert all(np.any(values == t) for t in range(3))
  # Each task gets the same 12.5 % share of every leaf (the reference's rule, not a share of
  # what is left).
  for leaf in jax.tree.leaves(owners):
    share = leaf.size - int(0.875 * leaf.size)
    assert [np.sum(np.asarray(leaf) == t) for t in range(3)] == [share] * 3
  # Evaluating task 0 ignores weights owned by later tasks (changing them changes nothing).
  params = state.learner.params
  perturbed = params._replace(
    actor=jax.tree.map(lambda w, o: jnp.where(o > 0, w + 5.0, w), params.actor, owners)
  )
  chex.assert_trees_all_equal(
    method.eval_params(params, state.method_state, 0),
    method.eval_params(perturbed, state.method_state, 0),
  )
  assert not np.allclose(
    method.eval_params(params, state.method_state, 2)["params"]["hidden_0"]["kernel"],
    method.eval_params(perturbed, state.method_state, 2)["params"]["hidden_0"]["kernel"],
  )


# ---------------------------------------------------------------------------------------- PNN


def test_pnn_earlier_columns_are_bit_identical_after_later_tasks():
  method = make_method("pnn", CFG, **OPTIONS["pnn"])
  _, _, after = run_tasks(method, 3)
  state = after[-1]
  num_columns = CFG.max_tasks
  for name, final in state.learner.params.actor["params"].items():
    columns = pnn_lib.leaf_columns(name, num_columns)
    first = np.asarray(after[0].learner.params.actor["params"][name])
    frozen = columns == 0
    np.testing.assert_array_equal(np.asarray(final)[frozen], first[frozen])
    if np.any(columns == 2):  # The third column trained in the third task.
      assert not np.array_equal(np.asarray(final)[columns == 2], first[columns == 2]), name


def test_pnn_lateral_blocks_start_as_one_torch_linear_over_all_earlier_columns():
  """The reference's V into column k is one Linear(k n, n): bound 1 / sqrt(k n) per block."""
  actor = pnn_lib.ProgressiveActor(action_size=2, num_columns=4, hidden_sizes=(64, 64))
  v = np.asarray(actor.init(jax.random.key(0), jnp.zeros((1, 3)), 0)["params"]["lateral_v_1"])
  pair_k, _ = pnn_lib.column_pairs(4)
  for block, k in zip(v, pair_k, strict=True):
    bound = 1.0 / np.sqrt(64 * k)
    assert np.max(np.abs(block)) <= bound and np.max(np.abs(block)) > 0.99 * bound


def test_pnn_column_uses_earlier_columns_through_laterals_and_not_later_ones():
  actor = pnn_lib.ProgressiveActor(action_size=2, num_columns=3, hidden_sizes=(5, 5))
  params = actor.init(jax.random.key(0), jnp.zeros((1, 3)), 0)
  obs = jax.random.normal(jax.random.key(1), (4, 3))

  def bump_column(column):
    def bump(path, x):
      name = path[-1].key
      hit = pnn_lib.leaf_columns(name, 3) == column
      return x + 0.5 * hit.reshape(-1, *[1] * (x.ndim - 1))

    return jax.tree_util.tree_map_with_path(bump, params)

  out = lambda p, t: actor.apply(p, obs, t)[0]  # noqa: E731
  assert not np.allclose(out(params, 1), out(bump_column(0), 1))  # Column 1 reads column 0.
  np.testing.assert_array_equal(out(params, 0), out(bump_column(1), 0))  # Not the reverse.
  # The slow reference: column 0 alone is a plain MLP with its own weights.
  p = params["params"]
  h = obs
  for layer in range(3):
    h = h @ p[f"kernel_{layer}"][0] + p[f"bias_{layer}"][0]
    h = jnp.where(h > 0, h, 0.2 * h) if layer < 2 else h
  np.testing.assert_allclose(out(params, 0), h[:, :2], rtol=1e-5, atol=1e-6)
  # Column 1, written out as the reference's forward: its own layer plus U(LeakyReLU(V alpha
  # h_0)) + c from column 0's previous layer (every parameter moved off its init first).
  keys = iter(jax.random.split(jax.random.key(2), 64))
  p = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(next(keys), x.shape), params)["params"]
  leaky = lambda x: jnp.where(x > 0, x, 0.2 * x)  # noqa: E731
  # Column 2 likewise, from columns 0 and 1 through the blocks of its one Linear(2 n, n).
  pair = {(1, 0): 0, (2, 0): 1, (2, 1): 2}  # The order of column_pairs(3).
  h0 = h1 = h2 = obs
  for layer in range(3):
    v = lambda k, j: p[f"lateral_v_{layer}"][pair[k, j]]  # noqa: E731
    own1 = h1 @ p[f"kernel_{layer}"][1] + p[f"bias_{layer}"][1]
    own2 = h2 @ p[f"kernel_{layer}"][2] + p[f"bias_{layer}"][2]
    if layer > 0:
      alpha = p[f"lateral_alpha_{layer}"]
      a1 = leaky((alpha[0] * h0) @ v(1, 0))
      a2 = leaky((alpha[1] * h0) @ v(2, 0) + (alpha[1] * h1) @ v(2, 1))
      own1 = own1 + a1 @ p[f"lateral_u_{layer}"][0] + p[f"lateral_u_bias_{layer}"][0]
      own2 = own2 + a2 @ p[f"lateral_u_{layer}"][1] + p[f"lateral_u_bias_{layer}"][1]
    h0 = h0 @ p[f"kernel_{layer}"][0] + p[f"bias_{layer}"][0]
    if layer < 2:
      h0, h1, h2 = leaky(h0), leaky(own1), leaky(own2)
    else:
      h0, h1, h2 = h0, own1, own2
  moved = {**params, "params": p}
  np.testing.assert_allclose(out(moved, 1), h1[:, :2], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out(moved, 2), h2[:, :2], rtol=1e-5, atol=1e-5)


def test_pnn_training_forward_skipping_later_columns_equals_the_full_forward():
  """``skip_later_columns`` (one switch branch per task) moves neither outputs nor gradients,
  for every task id, its wrap-around past the last column included."""
  actor = pnn_lib.ProgressiveActor(action_size=2, num_columns=4, hidden_sizes=(5, 5))
  params = actor.init(jax.random.key(0), jnp.zeros((1, 3)), 0)
  keys = iter(jax.random.split(jax.random.key(2), 64))
  params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(next(keys), x.shape), params)
  obs = jax.random.normal(jax.random.key(1), (6, 3))

  def loss(params, task_id, skip):
    mu, log_std = actor.clone(skip_later_columns=skip).apply(params, obs, task_id)
    return jnp.sum(jnp.sin(mu)) + jnp.sum(log_std**2)

  value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=2)
  for task_id in range(6):
    full, full_grads = value_and_grad(params, jnp.int32(task_id), False)
    skipped, skipped_grads = value_and_grad(params, jnp.int32(task_id), True)
    np.testing.assert_allclose(skipped, full, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(skipped_grads), jax.tree.leaves(full_grads), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pnn_update_forward_reads_no_column_after_the_tasks():
  """``make_pnn``'s training policy with NaN in every later column: its value and gradients
  stay finite. The full forward's gradients do not (0 x NaN through the later columns)."""
  method = make_method("pnn", CFG, **OPTIONS["pnn"])
  networks = method.make_networks(3, 2, CFG)
  params = networks.actor.init(jax.random.key(0), jnp.zeros((1, 3)), 0)
  obs, key = jax.random.normal(jax.random.key(1), (6, 3)), jax.random.key(2)

  def poison_after(column):
    def poison(path, x):
      later = pnn_lib.leaf_columns(path[-1].key, CFG.max_tasks) > column
      return jnp.where(later.reshape(-1, *[1] * (x.ndim - 1)), jnp.nan, x)

    return jax.tree_util.tree_map_with_path(poison, params)

  def loss(params, task_id, forward):
    mu, log_std = forward(params, obs, task_id)
    return jnp.sum(mu) + jnp.sum(log_std)

  training = lambda p, o, t: networks.policy(p, o, t, key)  # noqa: E731
  value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=2)
  for task_id in range(CFG.max_tasks - 1):
    value, grads = value_and_grad(poison_after(task_id), jnp.int32(task_id), training)
    assert np.isfinite(value), task_id
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads)), task_id
  _, grads = value_and_grad(poison_after(0), jnp.int32(0), networks.actor.apply)
  assert not all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_model_sizes_as_the_paper_counts():
  env = TargetReachEnv()
  one = ft_1_policy_size(env.observation_size, env.action_size, CFG)
  sizes = {}
  for name in ("ft_1", "ft_l2", "ewc", "packnet", "pnn"):
    method = make_method(name, CFG, **OPTIONS.get(name, {}))
    sizes[name] = reported_size(method, CFG, env, num_tasks=4) / one
  assert sizes["ft_1"] == 1.0 and sizes["ft_l2"] == 2.0
  assert sizes["ewc"] == 3.0 and sizes["packnet"] == 2.0
  # PNN, width 6, obs 3, act 2, 4 columns, 2 hidden layers: W, b per column; pairs j < k.
  columns = 4 * ((3 * 6 + 6) + (6 * 6 + 6) + (6 * 4 + 4))
  # Into columns 1..3 at layers 1 and 2: alpha and U (with bias) per column, V per pair j < k.
  laterals = 3 * 2 + 6 * (6 * 6) * 2 + 3 * (6 * 6 + 6) + 3 * (6 * 4 + 4)
  assert sizes["pnn"] * one == columns + laterals


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_the_tiny_scenario_end_to_end_as_golden(name, tmp_path):
  cfg = dataclasses.replace(CFG, steps_per_task=8 * 12)
  method = make_method(name, cfg, **OPTIONS.get(name, {}))
  out = tmp_path if name == "rewire" else None  # Its log is checked below.
  env = TargetReachEnv(num_tasks=4)
  result = train_sequence(cfg, env, method, [0, 1], progress=False, out_dir=out)
  assert result.returns.shape == (1, 2, 2) and np.all(np.isfinite(result.returns))
  assert result.policy_params >= result.ft_1_policy_params
  golden.check(f"toy/{name}", result)  # The behaviour, frozen bit for bit.
  if out is not None:  # The method's end-of-task metrics are logged with each task's row of R.
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    ends = [x for x in lines if "end_of_task_returns_per_seed" in x]
    assert len(ends) == 2
    for end in ends:
      assert len(end["rewire/mode_returns_per_seed"][0]) == 3  # [seeds][K modes].
      assert end["rewire/rolled_back_per_seed"] in ([True], [False])
    assert ends[0]["rewire/rolled_back_per_seed"] == [False]  # Never in the first task.


# ---------------------------------------------------------------------------------------- CSP

CSP_OPTIONS = OPTIONS["csp"]


def _csp_before_second_end(distribution="flat"):
  """CSP trained on task 0 and on task 1 up to (not including) its end."""
  method = make_method("csp", CFG, distribution=distribution, **CSP_OPTIONS)
  trainer, _, after = run_tasks(method, 1)
  state = after[-1]
  task = jnp.int32(1)
  state, _ = jax.jit(trainer.warmup)(jax.jit(trainer.begin_task)(state, task), task)
  state, _ = jax.jit(trainer.train_chunk)(state, task)
  return method, trainer, after[0], state


def _stub_context(method, weights, replay, key):
  """Task 1's context, its 'rollout' return ``weights . alpha`` (the evaluated point)."""
  networks = method.make_networks(TargetReachEnv().observation_size, 2, CFG)
  evaluate = lambda actor, task_id, key: jnp.dot(actor["subspace"]["alpha"], weights)  # noqa: E731
  return task_context(1, key, evaluate=evaluate, networks=networks, replay=replay)


def test_csp_new_anchor_starts_at_the_mean_and_old_anchors_stay_frozen():
  _, _, after_first, state = _csp_before_second_end()
  first = after_first.learner.params.actor["params"]
  now = state.learner.params.actor["params"]
  assert int(state.method_state.num_anchors) == 2
  for name in first:
    np.testing.assert_array_equal(now[name][0], first[name][0])  # Anchor 0 frozen.
    assert not np.array_equal(now[name][1], first[name][0])  # Anchor 1 trained...
  chex.assert_trees_all_equal(
    after_first.learner.params.actor["subspace"], {"alpha": jnp.eye(4)[0]}
  )


def test_csp_starts_a_fresh_critic_with_the_new_anchor():
  _, trainer, after_first, _ = _csp_before_second_end()
  begun = jax.jit(trainer.begin_task)(after_first, jnp.int32(1))
  critic, target = begun.learner.params.critic, begun.learner.params.target_critic
  chex.assert_trees_all_equal(critic, target)
  for old, new in zip(
    jax.tree.leaves(after_first.learner.params.critic), jax.tree.leaves(critic), strict=True
  ):
    assert not np.array_equal(old, new)


def test_csp_acting_draws_half_of_the_envs_in_the_old_subspace():
  method, _, _, state = _csp_before_second_end()
  networks = method.make_networks(TargetReachEnv().observation_size, 2, CFG)
  obs = jnp.zeros((8, TargetReachEnv().observation_size))
  fresh = state.method_state._replace(acting_steps=jnp.int32(0))  # A redraw step.
  _, _, acted = method.act(networks, state.learner.params.actor, fresh, obs, 1, jax.random.key(0))
  alpha = np.asarray(acted.acting_alpha)
  assert np.all(alpha[:4, 1] > 0) and np.all(alpha[4:, 1] == 0)  # Anchor 1 is the new one.
  np.testing.assert_allclose(alpha[4:, 0], 1.0)  # The old subspace: anchor 0 alone.
  one_anchor = fresh._replace(num_anchors=jnp.int32(1))
  _, _, acted = method.act(
    networks, state.learner.params.actor, one_anchor, obs, 0, jax.random.key(0)
  )
  np.testing.assert_allclose(np.asarray(acted.acting_alpha)[:, 0], 1.0)


def test_csp_critic_learns_at_acting_points_and_the_actor_in_the_new_subspace():
  """The wrapped losses equal the plain SAC losses on ``[obs, alpha]`` with the points drawn
  from the acting mixture (critic) or the new subspace (actor), the same point at s and s'."""
  from rewirejax import replay as replay_lib
  from rewirejax.methods import csp
  from rewirejax.sac import losses_of

  method, _, _, state = _csp_before_second_end("peaked")
  env = TargetReachEnv()
  networks = method.make_networks(env.observation_size, env.action_size, CFG)
  sac_losses = losses_of(networks, CFG.sac, env.action_size)
  plain, wrapped = sac_losses(networks.policy), method.make_losses(sac_losses, networks, CFG)
  params, method_state = state.learner.params, state.method_state
  batch = replay_lib.gather(state.replay, jnp.arange(16))
  key, task = jax.random.key(3), jnp.int32(1)
  key_alpha, key_loss = jax.random.split(key)
  alpha = csp.acting_mixture(key_alpha, 2, 4, 16, True)
  assert np.all(np.asarray(alpha)[:8, 1] > 0) and np.all(np.asarray(alpha)[8:, 1] == 0)
  at = lambda a: batch._replace(  # noqa: E731
    obs=jnp.concatenate([batch.obs, a], -1), next_obs=jnp.concatenate([batch.next_obs, a], -1)
  )
  expected = plain.critic(params.critic, params, method_state, at(alpha), task, key_loss)
  got = wrapped.critic(params.critic, params, method_state, batch, task, key)
  chex.assert_trees_all_close(got, expected, rtol=1e-6)
  alpha = csp.sample_alpha(key_alpha, 2, 4, (16,), True)
  expected = plain.actor(params.actor, params, method_state, at(alpha), task, key_loss)
  got = wrapped.actor(params.actor, params, method_state, batch, task, key)
  chex.assert_trees_all_close(got, expected, rtol=1e-6)


def test_csp_keeps_the_best_critic_point_and_a_rejected_anchor_leaves_the_size_unchanged():
  method, _, _, state = _csp_before_second_end()
  params, method_state = state.learner.params, state.method_state
  replay = state.replay
  key = jax.random.key(5)
  # Accepted: the rollout return grows with the new anchor's weight.
  ctx = _stub_context(method, jnp.array([0.0, 5.0, 0.0, 0.0]), replay, key)
  _, kept, metrics = method.end_task(params, method_state, ctx)
  assert bool(metrics["csp/kept"]) and int(kept.num_anchors) == 2
  size_kept = int(metrics[base.POLICY_PARAMS])
  # The slow reference: score every candidate of the new subspace by the critic, one by one.
  key_new, _, key_states, _, _ = jax.random.split(key, 5)
  from rewirejax import replay as replay_lib
  from rewirejax.methods import csp

  obs = replay_lib.sample(replay, key_states, CSP_OPTIONS["critic_states"]).obs
  points = csp.sample_alpha(key_new, 2, 4, (CSP_OPTIONS["alpha_candidates"],), False)
  values = []
  for alpha in points:
    mu, _ = ctx.networks.actor.apply(csp.with_alpha(params.actor, alpha), obs, 1)
    aug = jnp.concatenate([obs, jnp.broadcast_to(alpha, (obs.shape[0], 4))], -1)
    values.append(
      float(jnp.mean(jnp.min(ctx.networks.critic.apply(params.critic, aug, jnp.tanh(mu)), 0)))
    )
  np.testing.assert_allclose(kept.task_alpha[1], points[int(np.argmax(values))], rtol=1e-6)
  assert np.all(np.asarray(points)[:, 2:] == 0) and np.allclose(np.sum(points, -1), 1.0)
  # Rejected: only anchor 0 pays; the task keeps a point of the old subspace (anchor 0 alone).
  ctx = _stub_context(method, jnp.array([1.0, 0.0, 0.0, 0.0]), replay, key)
  _, dropped, metrics = method.end_task(params, method_state, ctx)
  assert not bool(metrics["csp/kept"]) and int(dropped.num_anchors) == 1
  np.testing.assert_allclose(dropped.task_alpha[1], jnp.eye(4)[0])
  size_dropped = int(metrics[base.POLICY_PARAMS])
  per_anchor = base.num_params(params.actor["params"]) // 4  # Each of the 4 anchor slots.
  assert size_kept - size_dropped == per_anchor > 0
  assert size_dropped == per_anchor + 2 * 4  # One anchor, two tasks' points of 4 weights.


def test_csp_points_with_one_active_anchor_are_finite_in_2_to_the_24_draws():
  """One draw in 2^23 of ``jax.random.exponential`` is 0, and a lone anchor's point was then
  0 / 0 (5 NaN rows of these 2^24 with key 0; a NaN actor loss in CSP's first task)."""
  from rewirejax.methods import csp

  points = csp.sample_alpha(jax.random.key(0), 1, 2, (1 << 24,), False)
  assert bool(jnp.all(jnp.isfinite(points))) and bool(jnp.all(points[:, 1] == 0))
  np.testing.assert_allclose(points[:, 0], 1.0, rtol=1e-6)


def test_csp_dirichlet_points_are_on_the_active_simplex_and_peaked_favours_the_newest():
  """Points on the first 3 of 5 anchors, distributed as Dirichlet(1, 1, 1) (flat) or
  Dirichlet(1, 1, 9) (peaked): each marginal against its Beta(a_i, a_0 - a_i) by a KS test,
  and the covariance against the Dirichlet's, (diag(m) - m m^T) / (a_0 + 1) with m = a / a_0."""
  from scipy import stats

  from rewirejax.methods import csp

  for peaked, concentration in ((False, [1.0, 1.0, 1.0]), (True, [1.0, 1.0, 9.0])):
    points = np.asarray(csp.sample_alpha(jax.random.key(0), 3, 5, (20_000,), peaked))
    assert np.all(points[:, 3:] == 0) and np.allclose(np.sum(points, -1), 1.0)
    a = np.asarray(concentration)
    a0, mean = a.sum(), a / a.sum()
    for i in range(3):
      assert stats.kstest(points[:, i], stats.beta(a[i], a0 - a[i]).cdf).pvalue > 1e-3, i
    np.testing.assert_allclose(np.mean(points[:, :3], 0), mean, atol=5e-3)
    covariance = (np.diag(mean) - np.outer(mean, mean)) / (a0 + 1)
    np.testing.assert_allclose(np.cov(points[:, :3].T), covariance, atol=2e-3)
