"""The task-headed tanh-Gaussian actor (with permuted hidden layers) and the twin critic.

SPEC §2. The actor is ``obs -> L x [PermutedDense(256) -> LeakyReLU(0.2)] -> head[slot]``, with
``num_heads`` head slots preallocated as ``[num_heads, 256, 2 act_dim]`` and task ``t`` using slot
``t % num_heads`` (a traced index): ``num_heads = max_tasks`` gives every task its own head, the
reference's ``cycle`` shares a head between repeats of a task, and 1 is the baselines' single
head. Baselines use the same MLP with plain Dense layers (``permuted=False``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from rewirejax.layers import PermutedDense, identity_scores
from rewirejax.types import Array, Params, PRNGKey

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
LEAKY_SLOPE = 0.2
# PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the reference code's init.
torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# The same for kernels [n, fan_in, fan_out] stacked on a leading axis (head slots, PNN columns,
# CSP anchors): U(+-1/sqrt(fan_in)) per slice, the leading axis not part of the fan-in.
stacked_torch_linear_init = nn.initializers.variance_scaling(
  1.0 / 3.0, "fan_in", "uniform", in_axis=-2, out_axis=-1, batch_axis=(0,)
)


def torch_bias_init(fan_in: int):
  """PyTorch's nn.Linear bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for a bias of any
  shape (a plain bias, or one per head slot, column or anchor)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: PRNGKey, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Actor(nn.Module):
  """Outputs ``(mu, log_std)`` [..., act_dim] of the pre-tanh Gaussian for task ``task_id``.

  Attributes:
    action_size: act_dim.
    num_heads: preallocated head slots; task ``t`` uses slot ``t % num_heads``.
    hidden_sizes: widths of the hidden layers.
    num_modes: K score rows per permuted layer.
    tau: SoftSort temperature of the permuted layers.
    permuted: PermutedDense hidden layers (rewiring) or plain Dense (baselines).
    alignment_adapters: also hold the alignment adapters' scores (Sec. 3.4), identity at init
      and unused by the forward pass: ``adapter_out_l`` [width_l] (P'_l, output side of hidden
      layer l) and, for l >= 1, ``adapter_in_l`` [width_{l-1}] (P''_l, input side).
    gumbel_noise: scale of Gumbel noise added to the scores when ``noisy_wiring`` (the
      reference's training-time noise; rng stream ``"noise"``).
    dropout: rate of dropout on the hidden pre-activations when ``train`` (rng ``"dropout"``;
      after the permutation, which is the same in distribution as before it).
  """

  action_size: int
  num_heads: int
  hidden_sizes: tuple[int, ...] = (256, 256, 256)
  num_modes: int = 1
  tau: float = 1.0
  permuted: bool = True
  alignment_adapters: bool = False
  gumbel_noise: float = 0.0
  dropout: float = 0.0

  @nn.compact
  def __call__(
    self,
    obs: Array,
    task_id: Array,
    mode: Array | int = 0,
    wirings: Array | None = None,
    tau: Array | float | None = None,
    train: bool = False,
    noisy_wiring: bool = False,
  ) -> tuple[Array, Array]:
    """Args: obs [..., obs_dim]; task_id int32 scalar (traced ok); mode int (traced ok);
    wirings [num_hidden, width] int32 cached orders overriding the scores; tau overriding
    ``self.tau`` (a traced value: swept temperatures share one compile); train: dropout on;
    noisy_wiring: Gumbel noise on the scores."""
    if self.alignment_adapters:
      for i, width in enumerate(self.hidden_sizes):
        self.param(f"adapter_out_{i}", identity_scores, (width,))
        if i > 0:
          self.param(f"adapter_in_{i}", identity_scores, (self.hidden_sizes[i - 1],))
    h = obs
    for i, width in enumerate(self.hidden_sizes):
      if self.permuted:
        layer = PermutedDense(
          width,
          self.num_modes,
          self.tau,
          kernel_init=torch_linear_init,
          bias_init=torch_bias_init(h.shape[-1]),
          name=f"hidden_{i}",
        )
        noise = None
        if noisy_wiring and self.gumbel_noise > 0:
          noise = self.gumbel_noise * jax.random.gumbel(self.make_rng("noise"), (width,))
        h = layer(h, mode, None if wirings is None else wirings[i], tau, noise)
      else:
        h = nn.Dense(
          width,
          kernel_init=torch_linear_init,
          bias_init=torch_bias_init(h.shape[-1]),
          name=f"hidden_{i}",
        )(h)
      if self.dropout > 0:
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
      h = nn.leaky_relu(h, LEAKY_SLOPE)
    out_size = 2 * self.action_size
    kernels = self.param(
      "head_kernel", stacked_torch_linear_init, (self.num_heads, h.shape[-1], out_size)
    )
    biases = self.param("head_bias", torch_bias_init(h.shape[-1]), (self.num_heads, out_size))
    slot = head_slot(task_id, self.num_heads)
    out = h @ kernels[slot] + biases[slot]
    mu, log_std = jnp.split(out, 2, axis=-1)
    return mu, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def head_slot(task_id: Array, num_heads: int) -> Array:
  """The head slot of task ``task_id``: ``task_id % num_heads``."""
  return jnp.asarray(task_id) % num_heads


# The task heads of an ``Actor``'s params: ``head_kernel [num_heads, width, 2A]`` and
# ``head_bias [num_heads, 2A]``, task t's in slot ``head_slot(t, num_heads)``.


def task_head(actor: Params, task_id: Array) -> tuple[Array, Array]:
  """(kernel [width, 2A], bias [2A]): the head of task ``task_id``."""
  params = actor["params"]
  slot = head_slot(task_id, params["head_kernel"].shape[0])
  return params["head_kernel"][slot], params["head_bias"][slot]


def with_task_head(actor: Params, task_id: Array, head: tuple[Array, Array]) -> Params:
  """The actor with task ``task_id``'s head set to ``head`` (kernel, bias)."""
  params = actor["params"]
  slot = head_slot(task_id, params["head_kernel"].shape[0])
  kernel, bias = head
  heads = {
    "head_kernel": params["head_kernel"].at[slot].set(kernel),
    "head_bias": params["head_bias"].at[slot].set(bias),
  }
  return {**actor, "params": {**params, **heads}}


def carry_task_head(actor: Params, task_id: Array, source_task: Array) -> Params:
  """Task ``task_id``'s head slot set to ``source_task``'s head when that slot has never been
  used by then (``0 <= source_task < task_id < num_heads``, task ids in training order);
  otherwise the actor as it is.

  With ``source_task = task_id - 1`` this is SPEC §3: a task's head slot, on its first use,
  starts as a copy of the previous task's head (task 0 and slots seen before keep theirs; a
  single shared head is left as it is). In evaluation, with the current task, a task not begun
  yet gets the head it will start from, not its slot's random initialisation.
  """
  params = actor["params"]
  num_heads = params["head_kernel"].shape[0]
  slot, source = head_slot(task_id, num_heads), head_slot(source_task, num_heads)
  unused = (source_task >= 0) & (source_task < task_id) & (task_id < num_heads)

  def copy(heads):
    return heads.at[slot].set(jnp.where(unused, heads[source], heads[slot]))

  heads = {name: copy(params[name]) for name in ("head_kernel", "head_bias")}
  return {**actor, "params": {**params, **heads}}


def keep_heads(actor: Params, task_id: Array, source_task: Array) -> Params:
  """``carry_head`` of an actor without task heads (PNN's columns, CSP's subspace)."""
  del task_id, source_task
  return actor


class _QNetwork(nn.Module):
  hidden_sizes: tuple[int, ...]

  @nn.compact
  def __call__(self, x: Array) -> Array:
    for width in self.hidden_sizes:
      dense = nn.Dense(width, kernel_init=torch_linear_init, bias_init=torch_bias_init(x.shape[-1]))
      x = nn.leaky_relu(dense(x), LEAKY_SLOPE)
    out = nn.Dense(1, kernel_init=torch_linear_init, bias_init=torch_bias_init(x.shape[-1]))
    return out(x)[..., 0]


class TwinCritic(nn.Module):
  """Two Q networks ``q_0``, ``q_1``: ``(obs, action) -> [2, ...]``. No task input.

  Two plain MLPs rather than one ``nn.vmap``ped MLP: the batched matmuls of the vmapped form
  measured 1.5x slower on CPU (forward + backward at batch 256).
  """

  hidden_sizes: tuple[int, ...] = (256, 256, 256)

  @nn.compact
  def __call__(self, obs: Array, action: Array) -> Array:
    x = jnp.concatenate([obs, action], axis=-1)
    return jnp.stack([_QNetwork(self.hidden_sizes, name=f"q_{i}")(x) for i in range(2)])


class SACNetworks(NamedTuple):
  """The networks, and the functions of their params that the trainer and SAC call.

  Attributes:
    actor: the policy module; ``apply(params, obs, task_id) -> (mu, log_std)`` is the clean,
      deterministic forward (acting and evaluation).
    critic: the twin critic module, ``apply(params, obs, action) -> [2, ...]``.
    policy: (actor_params, obs, task_id, key) -> (mu, log_std), the training forward that the
      SAC losses use (``training_forward``; ``plain_policy`` for an actor without noise).
    carry_head: (actor_params, task_id, source_task) -> actor_params, the head a task starts
      from (``carry_task_head``; ``keep_heads`` for an actor without task heads).
  """

  actor: nn.Module
  critic: nn.Module
  policy: Callable[[Params, Array, Array, PRNGKey], tuple[Array, Array]]
  carry_head: Callable[[Params, Array, Array], Params] = keep_heads


def training_forward(actor: Actor, mode: Array | int = 0, tau: Array | None = None):
  """The ``Actor``'s training forward with wiring ``mode`` (and SoftSort ``tau``, default the
  actor's): dropout and Gumbel noise on the wiring, where the actor has them, drawn from the
  key. The reference's update runs its actor in train mode for the critic target as well."""

  def policy(actor_params: Params, obs: Array, task_id: Array, key: PRNGKey):
    key_noise, key_dropout = jax.random.split(jax.random.fold_in(key, 7))
    return actor.apply(
      actor_params,
      obs,
      task_id,
      mode,
      tau=tau,
      train=True,
      noisy_wiring=True,
      rngs={"noise": key_noise, "dropout": key_dropout},
    )

  return policy


def plain_policy(actor: nn.Module):
  """The training forward of an actor without noise or dropout: its plain ``apply``."""

  def policy(actor_params: Params, obs: Array, task_id: Array, key: PRNGKey):
    del key
    return actor.apply(actor_params, obs, task_id)

  return policy


class AgentParams(NamedTuple):
  """Everything the learner optimises or tracks, as one pytree."""

  actor: Params
  critic: Params
  target_critic: Params
  log_alpha: Array  # float32 scalar, log of the entropy temperature.


def make_sac_networks(
  observation_size: int,
  action_size: int,
  num_heads: int,
  hidden_sizes: tuple[int, ...] = (256, 256, 256),
  num_modes: int = 1,
  tau: float = 1.0,
  permuted: bool = True,
  alignment_adapters: bool = False,
  gumbel_noise: float = 0.0,
  dropout: float = 0.0,
) -> SACNetworks:
  del observation_size  # Shapes come from the first call; kept for a readable call site.
  actor = Actor(
    action_size,
    num_heads,
    hidden_sizes,
    num_modes,
    tau,
    permuted,
    alignment_adapters,
    gumbel_noise,
    dropout,
  )
  return SACNetworks(
    actor=actor,
    critic=TwinCritic(hidden_sizes),
    policy=training_forward(actor),
    carry_head=carry_task_head,
  )


def init_agent_params(
  networks: SACNetworks,
  key: PRNGKey,
  observation_size: int,
  action_size: int,
  init_temperature: float,
) -> AgentParams:
  key_actor, key_critic = jax.random.split(key)
  obs, action = jnp.zeros((1, observation_size)), jnp.zeros((1, action_size))
  actor = networks.actor.init(key_actor, obs, jnp.int32(0))
  critic = networks.critic.init(key_critic, obs, action)
  return AgentParams(actor, critic, critic, jnp.log(jnp.float32(init_temperature)))


def sample_tanh_gaussian(
  mu: Array, log_std: Array, key: PRNGKey, log_det: str = "exact"
) -> tuple[Array, Array]:
  """Reparameterised tanh-Gaussian sample and its log-probability.

  Returns ``action = tanh(u)``, ``u = mu + std * eps``, and ``log pi(action) =
  sum_i [log N(u_i; mu_i, std_i) - log(1 - tanh(u_i)^2)]``, the correction written as
  ``2 (log 2 - u - softplus(-2u))`` for stability (Haarnoja et al. 2018, App. C).
  ``log_det="reference"`` subtracts the reference code's ``2 log 2 - u - softplus(-2u)``
  instead (its parentheses are misplaced: half the correction plus log 2 per dimension).
  """
  eps = jax.random.normal(key, mu.shape, mu.dtype)
  u = mu + jnp.exp(log_std) * eps
  log_normal = -0.5 * eps**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
  if log_det == "reference":
    correction = 2.0 * jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)
  else:
    correction = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
  return jnp.tanh(u), jnp.sum(log_normal - correction, axis=-1)
