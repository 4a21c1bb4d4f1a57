"""Rewiring neurons (Sun & Mu 2023, Sec. 3; SPEC §4) as a plug-in of the one trainer.

The actor's hidden layers are ``PermutedDense`` with K score rows (modes). Per task:

* **Multi-mode** (Sec. 3.3): each env acts with a random mode per step; the update averages the
  SAC actor loss over all K modes (``mode_update="all"``, vmapped) or uses one random mode
  (``"sample"``), plus the distillation ``alpha * D(pi_k' || pi_k)`` towards a random other mode
  k' (held fixed): the KL of the pre-tanh Gaussians (Eq. 6) or the reference's squared error.
* **End of the task**: every mode is evaluated on the task and the best is kept; its wiring is
  cached as int32 orders in ``wirings [num_slots, L, width]`` and copied to all K rows (spacing
  reset). With ``rollback_if_worse``, if no mode beats the policy at the start of the task, the
  start-of-task weights, head and wiring come back.
* **Alignment** (Sec. 3.4, Eqs. 9-12): during task t > 0 the adapters ``P'_l`` (output side of
  hidden layer l) and ``P''_l`` (input side, l >= 1) are learned through
  ``beta * L_SP = beta * sum_l ||W_l - P'_l^T M_l P''_l||^2 + ||b_l - P'_l^T m_l||^2`` (torch
  layout [out, in]; ``M, m`` are the weights at the end of the previous task; the adapters are
  the reference's straight-through SoftSort matrices at ``align_tau``; for hard adapters the
  target is the gather ``M[i][:, o]`` in flax's [in, out] layout, ``o, i`` the inverses of the
  adapters' wirings). At the end of the task every earlier cached wiring is refined,
  ``w'_l = o_l^-1 o w_l o i_{l+1}`` (``i`` the next layer's input gather, ``a o b = a[b]``), so
  that the old tasks see the new weights exactly as they saw the old ones when the alignment
  is exact. The adapters learn under the actor's Adam, as the reference's; the option
  ``adapter_optimizer="sgd"`` gives them their own plain SGD (``actor_optimizer``).
* **Evaluation of task t**: the current weights, the cached (refined) wiring of t, head t.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from rewirejax import layers
from rewirejax import networks as networks_lib
from rewirejax.config import RewireConfig
from rewirejax.methods import base
from rewirejax.sac import SACLosses
from rewirejax.types import Array, Params


class RewireCoefs(NamedTuple):
  """The method's scalar settings as traced float32 leaves of its state, so a grid of them is
  one vmapped job (``rewirejax sweep``): alpha, beta and the scores' SoftSort tau."""

  distill_coef: Array
  align_coef: Array
  tau: Array


class RewireState(NamedTuple):
  """What the method remembers between tasks.

  Attributes:
    wirings: int32 [num_slots, L, width] the cached wiring of each task slot.
    cached: bool [num_slots] whether the slot holds a wiring.
    anchor: {hidden_l: {kernel, bias}} the hidden weights at the end of the previous task (M).
    start_head: (kernel [width, 2A], bias [2A]) the task's head at its start (rollback).
    start_wiring: int32 [L, width] the wiring at the start of the task (rollback).
    start_return: float32, the start-of-task policy's return on the task (rollback).
    mode_returns: float32 [K] each mode's return at the end of the last task.
    chosen_mode: int32, the mode kept at the end of the last task (-1: rolled back).
    coefs: the traced ``RewireCoefs`` (initialised from the config).
    training_task: int32, the task being trained (-1 between tasks): evaluated with the
      current scores, not its slot's cached wiring (a repeat's slot holds an older one).
    finished_tasks: int32, tasks ended so far: the regulariser acts, and a rollback may happen,
      from the second task on (whether or not wirings are cached).
    eval_key: uint32 key data of the task's evaluations: the start-of-task return and the
      modes' returns are measured on the same episodes (as the reference's).
  """

  wirings: Array
  cached: Array
  anchor: Params
  start_head: tuple[Array, Array]
  start_wiring: Array
  start_return: Array
  mode_returns: Array
  chosen_mode: Array
  coefs: RewireCoefs
  training_task: Array
  finished_tasks: Array
  eval_key: Array


# ---------------------------------------------------------------------------------------------
# Pure helpers on the actor's params (a linen variables dict with PermutedDense ``hidden_l``).


def _hidden_names(actor_params: Params) -> list[str]:
  names = [k for k in actor_params["params"] if k.startswith("hidden_")]
  return sorted(names, key=lambda k: int(k.split("_")[1]))


def _replace_layers(actor_params: Params, fields: dict[str, dict[str, Array]]) -> Params:
  params = dict(actor_params["params"])
  for name, values in fields.items():
    params[name] = {**params[name], **values}
  return {**actor_params, "params": params}


def mode_wirings(actor_params: Params, mode: Array | int) -> Array:
  """int32 [L, width]: the wiring of ``mode`` in every hidden layer."""
  params = actor_params["params"]
  return jnp.stack(
    [layers.wiring_of(params[n]["scores"][mode]) for n in _hidden_names(actor_params)]
  )


def _with_score_rows(actor_params: Params, rows: list[Array]) -> Params:
  """Every mode of hidden layer l set to the score vector ``rows[l]``."""
  params = actor_params["params"]
  fields = {
    name: {"scores": jnp.broadcast_to(row, params[name]["scores"].shape)}
    for name, row in zip(_hidden_names(actor_params), rows, strict=True)
  }
  return _replace_layers(actor_params, fields)


def with_wirings(actor_params: Params, wirings: Array) -> Params:
  """Every mode's scores set to ``scores_of(wirings[l])``: mode 0 (any mode) acts with them."""
  return _with_score_rows(actor_params, list(layers.scores_of(wirings)))


def select_mode(actor_params: Params, mode: Array | int) -> Params:
  """Every score row set to row ``mode`` (mode 0 then acts as ``mode``)."""
  params = actor_params["params"]
  rows = [params[name]["scores"][mode] for name in _hidden_names(actor_params)]
  return _with_score_rows(actor_params, rows)


def hidden_weights(actor_params: Params) -> Params:
  params = actor_params["params"]
  return {
    n: {"kernel": params[n]["kernel"], "bias": params[n]["bias"]}
    for n in _hidden_names(actor_params)
  }


def reset_adapters(actor_params: Params) -> Params:
  """Adapters back to the identity order (evenly spaced scores)."""
  params = {
    k: (layers.identity_scores(None, v.shape) if k.startswith("adapter_") else v)
    for k, v in actor_params["params"].items()
  }
  return {**actor_params, "params": params}


def adapter_orders(actor_params: Params) -> tuple[Array, Array]:
  """int32 ([L, width] output orders o_l, [L, width] input orders i_l, identity for l = 0):
  the gathers the hard adapters apply, ``M[i][:, o]``. The adapters' scores are the
  reference's ``zv``, ``av``, whose matrices act as ``P'^T M P''`` (torch layout), so the
  gathers are the inverses of their wirings."""
  params = actor_params["params"]
  names = _hidden_names(actor_params)
  width = params[names[0]]["bias"].shape[0]
  outs = [layers.wiring_of(params[f"adapter_out_{l}"]) for l in range(len(names))]
  ins = [layers.wiring_of(params[f"adapter_in_{l}"]) for l in range(1, len(names))]
  ins = [jnp.arange(width, dtype=jnp.int32)] + [layers.invert(i) for i in ins]
  return layers.invert(jnp.stack(outs)), jnp.stack(ins)


def refine_wirings(wirings: Array, out_orders: Array, in_orders: Array) -> Array:
  """Eq. 12: ``w'_l = compose(compose(invert(o_l), w_l), i_{l+1})`` with ``i_L`` the identity.

  Args:
    wirings: int32 [..., L, width] cached wirings.
    out_orders: int32 [L, width] the output adapters' orders o_l.
    in_orders: int32 [L, width] the input adapters' orders i_l (row 0 unused).
  """
  width = out_orders.shape[-1]
  next_in = jnp.concatenate([in_orders[1:], jnp.arange(width, dtype=jnp.int32)[None]])
  # The wiring helpers act on the last axis and broadcast the leading [..., L] ones.
  return layers.compose(layers.compose(layers.invert(out_orders), wirings), next_in)


def alignment_loss(
  actor_params: Params, anchor: Params, tau: float, align: bool, form: str = "norm"
) -> Array:
  """``L_SP = sum_l ||W_l - P'_l^T M_l P''_l||^2 + ||b_l - P'_l^T m_l||^2`` (Eq. 11, torch
  layout [out, in]; for hard adapters ``M[i][:, o]`` in flax's, ``adapter_orders``), the
  adapters as the reference's straight-through SoftSort matrices; without ``align``, plain L2
  to M.

  ``form="correlation"`` is the reference code's version: each term without its
  ``||P'^T M P''||^2``, i.e. ``||W||^2 - 2 <P'^T M P'', W>``. The dropped term is constant
  for hard permutations (so the value only shifts, and W's gradient is the same), but its
  straight-through gradient reaches the adapters: the reference's adapters follow the
  correlation with W alone."""
  params = actor_params["params"]
  total = jnp.float32(0.0)
  for l, name in enumerate(_hidden_names(actor_params)):
    kernel, bias = anchor[name]["kernel"], anchor[name]["bias"]
    if align:  # Flax [in, out]: (P'^T M P'')^T = P''^T M P'; columns and bias by P'.
      out_scores = params[f"adapter_out_{l}"]
      stacked = layers.permute(jnp.vstack([kernel, bias]), out_scores, tau, transpose=True)
      kernel, bias = stacked[:-1], stacked[-1]
      if l > 0:  # Rows by P''^T.
        in_scores = params[f"adapter_in_{l}"]
        kernel = layers.permute(kernel.T, in_scores, tau, transpose=True).T
    for current, target in ((params[name]["kernel"], kernel), (params[name]["bias"], bias)):
      if form == "correlation":
        total += jnp.sum(current**2) - 2.0 * jnp.sum(target * current)
      else:
        total += jnp.sum((current - target) ** 2)
  return total


def alignment_penalty(
  actor_params: Params, state: RewireState, rc: RewireConfig
) -> tuple[Array, dict[str, Array]]:
  """``beta L_SP`` (Eq. 11) from the second task on (zero in the first), and its metric."""
  active = (state.finished_tasks > 0).astype(jnp.float32)
  loss = alignment_loss(actor_params, state.anchor, rc.align_tau, rc.align, rc.align_loss)
  return state.coefs.align_coef * active * loss, {"rewire/align": loss}


def distillation(
  mu_teacher: Array, log_std_teacher: Array, mu: Array, log_std: Array, kind: str
) -> Array:
  """Pull of the student (mu, log_std) towards the teacher (held fixed, its mu clipped to
  [-20, 20] as the reference's), summed over the batch and action dims. ``"kl"``:
  KL(teacher || student) of the pre-tanh diagonal Gaussians,
  ``log s_s - log s_t + (s_t^2 + (m_t - m_s)^2) / (2 s_s^2) - 1/2``; ``"mse"``: the reference's
  ``(mu - mu_t)^2 + (log_std - log_std_t)^2``."""
  mu_teacher = jax.lax.stop_gradient(jnp.clip(mu_teacher, -20.0, 20.0))  # The reference's clip.
  log_std_teacher = jax.lax.stop_gradient(log_std_teacher)
  if kind == "mse":
    return jnp.sum((mu - mu_teacher) ** 2 + (log_std - log_std_teacher) ** 2)
  var_ratio = jnp.exp(2.0 * (log_std_teacher - log_std))
  mean_term = (mu_teacher - mu) ** 2 * jnp.exp(-2.0 * log_std)
  return jnp.sum(log_std - log_std_teacher + 0.5 * (var_ratio + mean_term) - 0.5)


# ---------------------------------------------------------------------------------------------


def make_rewire(cfg, rc: RewireConfig = RewireConfig(), name: str = "rewire"):
  """The rewiring method with options ``rc``: the hooks below, bound to ``rc`` and the number
  of wiring slots (one per task of ``cfg.max_tasks``, or ``rc.task_slots``)."""
  rc.validate()
  slots = rc.task_slots or cfg.max_tasks
  return base.fine_tuning(
    name,
    make_networks=functools.partial(make_networks, rc, slots),
    make_losses=functools.partial(make_losses, rc),
    act=functools.partial(act, rc),
    init=functools.partial(init, rc, slots),
    begin_task=functools.partial(begin_task, rc, slots),
    end_task=functools.partial(end_task, rc, slots),
    eval_params=functools.partial(eval_params, slots),
    actor_optimizer=functools.partial(actor_optimizer, rc),
  )


def default_coefs(rc: RewireConfig) -> RewireCoefs:
  return RewireCoefs(*(jnp.float32(x) for x in (rc.distill_coef, rc.align_coef, rc.tau)))


def actor_optimizer(rc: RewireConfig, cfg) -> optax.GradientTransformationExtraArgs:
  """The actor's Adam for every parameter, adapters included (the reference's); with
  ``adapter_optimizer="sgd"`` (a departure, off by default) the adapters' scores get plain SGD
  at ``adapter_lr`` instead. Adam moves a score by about its learning rate for any nonzero
  gradient, however small or noisy, so the adapters leave the identity within a few hundred
  updates at any beta (docs/cpu-protocol.md); SGD's steps scale with the gradient."""
  adam = base.actor_adam(cfg)
  if rc.adapter_optimizer == "actor_adam":
    return adam
  return optax.multi_transform(
    {"weights": adam, "adapters": optax.sgd(rc.adapter_lr)}, adapter_labels
  )


def adapter_labels(actor_params: Params) -> Params:
  """The tree of ``actor_params`` with "adapters" at the adapters' leaves, "weights" elsewhere."""

  def label(path, _):
    names = [getattr(entry, "key", "") for entry in path]
    return "adapters" if any(str(n).startswith("adapter_") for n in names) else "weights"

  return jax.tree_util.tree_map_with_path(label, actor_params)


def make_networks(rc: RewireConfig, slots: int, observation_size: int, action_size: int, cfg):
  """The task-headed actor with K-mode ``PermutedDense`` hidden layers (and the alignment
  adapters), one head per slot; the twin critic."""
  if len(set(cfg.sac.hidden_sizes)) != 1:
    raise ValueError(f"rewire needs equal hidden widths, got {cfg.sac.hidden_sizes}.")
  return networks_lib.make_sac_networks(
    observation_size,
    action_size,
    slots,
    cfg.sac.hidden_sizes,
    num_modes=rc.num_modes,
    tau=rc.tau,
    permuted=True,
    alignment_adapters=rc.align,
    gumbel_noise=rc.gumbel_noise,
    dropout=rc.dropout,
  )


def init(rc: RewireConfig, slots: int, key, params) -> RewireState:
  actor = params.actor
  wiring = mode_wirings(actor, 0)
  num_layers, width = wiring.shape
  return RewireState(
    wirings=jnp.broadcast_to(wiring, (slots, num_layers, width)),
    cached=jnp.zeros(slots, bool),
    anchor=hidden_weights(actor),
    start_head=networks_lib.task_head(actor, jnp.int32(0)),
    start_wiring=wiring,
    start_return=jnp.float32(-jnp.inf),
    mode_returns=jnp.zeros(rc.num_modes),
    chosen_mode=jnp.int32(0),
    coefs=default_coefs(rc),
    training_task=jnp.int32(-1),
    finished_tasks=jnp.int32(0),
    eval_key=jax.random.key_data(key),
  )


def begin_task(rc: RewireConfig, slots: int, params, state: RewireState, ctx: base.TaskContext):
  """Start from the slot's cached wiring (a repeated task) or the current one, spacing reset;
  adapters at identity; remember the start for a rollback (from the second task on: the first
  task's start is the random initialisation)."""
  actor, task_id, key = params.actor, ctx.task_id, ctx.key
  slot = task_id % slots
  start_wiring = jnp.where(state.cached[slot], state.wirings[slot], mode_wirings(actor, 0))
  actor = reset_adapters(with_wirings(actor, start_wiring))
  start_return = jnp.float32(-jnp.inf)
  if rc.rollback_if_worse:
    measured = ctx.evaluate(actor, task_id, key)
    start_return = jnp.where(state.finished_tasks > 0, measured, start_return)
  state = state._replace(
    eval_key=jax.random.key_data(key),
    start_head=networks_lib.task_head(actor, task_id),
    start_wiring=start_wiring,
    start_return=start_return,
    training_task=jnp.asarray(task_id, jnp.int32),
  )
  return params._replace(actor=actor), state


def act(rc: RewireConfig, networks, actor_params, state, obs, task_id, key):
  """Multi-mode acting (Sec. 3.3): each env acts with its own random mode this step, or all
  envs with one (``mode_per_env=False``, the reference's); dropout on, if any; hard wirings."""
  key_modes, key_dropout = jax.random.split(key)

  def policy(mode):
    return networks.actor.apply(
      actor_params, obs, task_id, mode, train=True, rngs={"dropout": key_dropout}
    )

  if rc.num_modes == 1:
    return (*policy(0), state)
  mu, log_std = jax.vmap(policy)(jnp.arange(rc.num_modes))  # [K, B, A]
  modes = jax.random.randint(key_modes, obs.shape[:1] if rc.mode_per_env else (), 0, rc.num_modes)
  modes = jnp.broadcast_to(modes, obs.shape[:1])
  rows = jnp.arange(obs.shape[0])
  return mu[modes, rows], log_std[modes, rows], state


def make_losses(rc: RewireConfig, sac_losses, networks, cfg) -> SACLosses:
  """SAC's losses over the K modes with the distillation between them (Sec. 3.3), plus the
  alignment ``beta L_SP`` (Sec. 3.4)."""
  del cfg
  num_modes = rc.num_modes

  def of_mode(mode, tau=None) -> SACLosses:
    return sac_losses(networks_lib.training_forward(networks.actor, mode, tau))

  def critic_loss(critic_params, params, state, batch, task_id, key):
    """The target's next action comes from a random mode (the reference's choice)."""
    mode = jax.random.randint(jax.random.fold_in(key, 1), (), 0, num_modes)
    return of_mode(mode).critic(critic_params, params, state, batch, task_id, key)

  def student(actor_params, params, state, batch, task_id, key, mode, coefs):
    # Each mode draws its own action noise: with shared noise, modes that start equal (all of
    # them, at identity) would get equal gradients and never part.
    key_mode = jax.random.fold_in(key, 1000 + mode)
    losses = of_mode(mode, coefs.tau)
    return losses.actor(actor_params, params, state, batch, task_id, key_mode)

  def actor_loss(actor_params, params, state, batch, task_id, key):
    """Mean over all K modes (vmapped) or one random mode of (SAC loss + distillation)."""
    coefs = default_coefs(rc) if state is None else state.coefs  # None: outside the trainer.
    args = (actor_params, params, state, batch, task_id, key)
    loss_of_mode = functools.partial(student, *args, coefs=coefs)
    teacher = functools.partial(_teacher_forward, networks, actor_params, batch.obs, task_id, key)
    if rc.mode_update == "sample" or num_modes == 1:
      return _one_mode_loss(rc, loss_of_mode, teacher, key, coefs)
    return _all_modes_loss(rc, loss_of_mode, teacher, key, coefs)

  losses = SACLosses(critic_loss, actor_loss, sac_losses(networks.policy).alpha)
  return base.with_actor_penalty(losses, lambda actor, state: alignment_penalty(actor, state, rc))


def _teacher_forward(networks, actor_params, obs, task_id, key, teacher):
  """The reference's distillation teacher: mode ``teacher`` in train mode (dropout, if any),
  no Gumbel noise."""
  dropout_key = jax.random.fold_in(key, 3000 + teacher)
  return networks.actor.apply(
    actor_params, obs, task_id, teacher, train=True, rngs={"dropout": dropout_key}
  )


def _teacher_of(num_modes: int, key, mode):
  """A random mode other than ``mode``."""
  offset = jax.random.randint(jax.random.fold_in(key, 2 + mode), (), 1, num_modes)
  return (mode + offset) % num_modes


def _with_distillation(rc: RewireConfig, loss, aux, teacher_out, coefs):
  """The mode's SAC loss plus ``alpha D(pi_teacher || pi_mode)`` (Eq. 6)."""
  distill = distillation(*teacher_out, aux.mu, aux.log_std, rc.distill)
  metrics = {**aux.metrics, "rewire/distill": distill}
  return loss + coefs.distill_coef * distill, aux._replace(metrics=metrics)


def _one_mode_loss(rc: RewireConfig, loss_of_mode, teacher, key, coefs):
  """``mode_update="sample"`` (or K = 1): one random mode's SAC loss and distillation."""
  mode = 0
  if rc.num_modes > 1:
    mode = jax.random.randint(jax.random.fold_in(key, 1), (), 0, rc.num_modes)
  loss, aux = loss_of_mode(mode=mode)
  if rc.num_modes == 1:  # No other mode to distil from.
    return loss, aux._replace(metrics={**aux.metrics, "rewire/distill": jnp.float32(0.0)})
  teacher_out = teacher(_teacher_of(rc.num_modes, key, mode))
  return _with_distillation(rc, loss, aux, teacher_out, coefs)


def _all_modes_loss(rc: RewireConfig, loss_of_mode, teacher, key, coefs):
  """``mode_update="all"``: the mean over the K modes (vmapped) of SAC loss + distillation.
  When the training forward adds no noise it equals the plain one, so a mode's student
  outputs serve as another mode's teacher, with no extra forward passes."""
  modes = jnp.arange(rc.num_modes)
  loss, aux = jax.vmap(lambda k: loss_of_mode(mode=k))(modes)
  teachers = jax.vmap(lambda k: _teacher_of(rc.num_modes, key, k))(modes)
  if rc.gumbel_noise == 0 and rc.dropout == 0:  # ``make_networks`` builds noise from ``rc``.
    teacher_out = (aux.mu[teachers], aux.log_std[teachers])
  else:
    teacher_out = jax.vmap(teacher)(teachers)
  loss, aux = jax.vmap(lambda *a: _with_distillation(rc, *a, coefs))(loss, aux, teacher_out)
  return jnp.mean(loss), jax.tree.map(lambda x: jnp.mean(x, axis=0), aux)


def end_task(rc: RewireConfig, slots: int, params, state: RewireState, ctx: base.TaskContext):
  """Keep the best mode (or roll back to the task's start), refine every cached wiring by the
  adapters (Eq. 12), cache the kept wiring in the task's slot, and make the weights M."""
  actor, task_id = params.actor, ctx.task_id
  # Every mode on the episodes the start of the task was measured on.
  key = jax.random.wrap_key_data(state.eval_key)
  mode_returns = jax.vmap(lambda k: ctx.evaluate(select_mode(actor, k), task_id, key))(
    jnp.arange(rc.num_modes)
  )
  best = jnp.argmax(mode_returns)
  chosen = select_mode(actor, best)
  rolled_back = jnp.bool_(False)
  if rc.rollback_if_worse:
    rolled_back = jnp.max(mode_returns) < state.start_return
    restored = _rollback(actor, state, task_id)
    chosen = jax.tree.map(lambda r, c: jnp.where(rolled_back, r, c), restored, chosen)
  wiring = mode_wirings(chosen, 0)
  wirings = state.wirings
  if rc.align:  # Eq. 12; the identity adapters of a rollback change nothing.
    refined = refine_wirings(wirings, *adapter_orders(chosen))
    wirings = jnp.where(state.cached[:, None, None], refined, wirings)
  cached = state.cached
  if rc.cache_wirings:
    slot = task_id % slots
    wirings, cached = wirings.at[slot].set(wiring), cached.at[slot].set(True)
  actor = reset_adapters(with_wirings(chosen, wiring))
  state = state._replace(
    wirings=wirings,
    cached=cached,
    anchor=hidden_weights(actor),
    mode_returns=mode_returns,
    chosen_mode=jnp.where(rolled_back, -1, best).astype(jnp.int32),
    training_task=jnp.int32(-1),
    finished_tasks=state.finished_tasks + 1,
  )
  metrics = {
    "rewire/mode_returns": mode_returns,
    "rewire/rolled_back": rolled_back,
    base.POLICY_PARAMS: policy_size(rc, slots, actor, state, ctx.num_tasks),
  }
  return params._replace(actor=actor), state, metrics


def eval_params(slots: int, params, state: RewireState, task_id):
  """Task ``task_id`` is evaluated with the current weights and its slot's cached wiring
  (the current scores while it trains, or before its slot holds one)."""
  slot = task_id % slots
  use_cache = state.cached[slot] & (task_id != state.training_task)
  cached = with_wirings(params.actor, state.wirings[slot])
  return jax.tree.map(lambda c, a: jnp.where(use_cache, c, a), cached, params.actor)


def policy_size(rc: RewireConfig, slots: int, actor_params, state: RewireState, num_tasks):
  """The paper's count of the model size: the actor (hidden weights, K score rows, adapters,
  the heads used), the previous task's weights M, one head and one wiring kept for a
  rollback, and the cached wirings of the slots used (``num_tasks`` may be traced)."""
  num_layers, width = state.wirings.shape[1:]
  slots_used = jnp.minimum(jnp.maximum(num_tasks, 1), slots) if rc.cache_wirings else 0
  one_head = base.num_params(state.start_head)
  return (
    base.actor_size(actor_params, num_tasks)
    + base.num_params(state.anchor)
    + one_head
    + (slots_used + 1) * num_layers * width
  )


def _rollback(actor_params: Params, state: RewireState, task_id: Array) -> Params:
  """The actor at the start of the task: weights M, the start head and wiring, identity
  adapters (other heads were frozen, so they are unchanged)."""
  actor = _replace_layers(actor_params, state.anchor)
  actor = networks_lib.with_task_head(actor, task_id, state.start_head)
  return reset_adapters(with_wirings(actor, state.start_wiring))
