"""Rewiring alone recovers a function: learn only the score vectors of a shuffled MLP copy.

A fixed random MLP (``obs -> L x [PermutedDense(width) -> LeakyReLU(0.2)] -> Dense``, L =
``--num-hidden``, default 1) is the teacher. Its copy has the same weights, except that in
each hidden layer some output neurons were swapped with a neighbour (the columns of ``kernel``
and entries of ``bias``), so the copy computes a different function. We freeze every weight of
the copy and train only its score vectors, through ``rewirejax.layers.permute`` (hard gather
forward, SoftSort backward), to match the teacher's outputs. The function is recovered exactly
when each layer learns the inverse of its shuffle.

What this does and does not show: SoftSort gradients move a neuron between nearby
positions of the score order, so local rewirings (here: random disjoint swaps of
adjacent neurons) are found by plain gradient descent. A uniformly random shuffle of all
neurons is a combinatorial search that gradient descent from the identity does not solve
(``--swap-fraction`` does not model it; see docs/usage.md).

Run: ``python experiments/permutation_recovery.py`` (about 10 s on 2 CPU cores). Writes
``results/permutation_recovery.{png,csv}``.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from rewirejax import layers


class Teacher(nn.Module):
  """``num_hidden`` permuted hidden layers and a linear read-out."""

  width: int
  num_hidden: int
  num_outputs: int
  tau: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for _ in range(self.num_hidden):
      x = nn.leaky_relu(layers.PermutedDense(self.width, tau=self.tau)(x), 0.2)
    return nn.Dense(self.num_outputs)(x)


class Curve(NamedTuple):
  loss: jax.Array  # [num_steps] MSE to the teacher (hard wirings: the real function).
  recovered: jax.Array  # [num_steps] fraction of hidden neurons wired back correctly.


def adjacent_swaps(rng: np.random.Generator, width: int, swap_fraction: float) -> np.ndarray:
  """An order of ``width`` neurons in which disjoint neighbour pairs are swapped."""
  order = np.arange(width)
  pairs = rng.permutation(width // 2)[: round(swap_fraction * (width // 2))]
  for p in pairs:
    order[[2 * p, 2 * p + 1]] = order[[2 * p + 1, 2 * p]]
  return order


def hidden_layer_names(num_hidden: int) -> list[str]:
  return [f"PermutedDense_{i}" for i in range(num_hidden)]


def shuffle_hidden_neurons(params: dict, shuffles: list[np.ndarray]) -> dict:
  """Moves output neuron ``shuffle[i]`` of each hidden layer to position ``i``."""
  params = dict(params)
  for name, shuffle in zip(hidden_layer_names(len(shuffles)), shuffles, strict=True):
    layer = dict(params[name])
    layer["kernel"] = layer["kernel"][:, shuffle]
    layer["bias"] = layer["bias"][shuffle]
    params[name] = layer
  return params


def with_scores(params: dict, scores: tuple[jax.Array, ...]) -> dict:
  params = dict(params)
  for name, layer_scores in zip(hidden_layer_names(len(scores)), scores, strict=True):
    params[name] = {**params[name], "scores": layer_scores[None]}  # [K = 1, width].
  return params


class Problem(NamedTuple):
  """One seed's recovery problem; every field gets a leading [num_seeds] axis when stacked."""

  copy: dict  # The teacher's params with shuffled hidden neurons.
  inputs: jax.Array  # [num_samples, num_inputs]
  targets: jax.Array  # [num_samples, 4] teacher outputs.
  wanted: jax.Array  # [num_hidden, width] int32 wirings that undo the shuffles.


def make_problem(model: Teacher, args: argparse.Namespace, seed: int) -> Problem:
  key_init, key_x = jax.random.split(jax.random.key(seed))
  inputs = jax.random.normal(key_x, (args.num_samples, args.num_inputs))
  teacher = model.init(key_init, inputs)["params"]
  rng = np.random.default_rng(seed)
  shuffles = [adjacent_swaps(rng, args.width, args.swap_fraction) for _ in range(args.num_hidden)]
  # Position i must read neuron i back: the wiring that undoes each shuffle.
  wanted = jnp.stack([layers.invert(jnp.asarray(s, jnp.int32)) for s in shuffles])
  copy = shuffle_hidden_neurons(teacher, shuffles)
  return Problem(copy, inputs, model.apply({"params": teacher}, inputs), wanted)


def recover(args: argparse.Namespace) -> Curve:
  """Trains the copies' scores for all seeds in one vmapped, scanned job.

  Returns the curve with shapes [num_seeds, num_steps + 1] (the last entry is after the
  final step).
  """
  model = Teacher(args.width, args.num_hidden, num_outputs=4, tau=args.tau)
  seeds = range(args.seed, args.seed + args.num_seeds)
  problems = jax.tree.map(lambda *xs: jnp.stack(xs), *[make_problem(model, args, s) for s in seeds])
  optimizer = optax.sgd(args.learning_rate)

  def recover_one(problem: Problem) -> Curve:
    def loss_fn(scores):
      outputs = model.apply({"params": with_scores(problem.copy, scores)}, problem.inputs)
      return jnp.mean((outputs - problem.targets) ** 2)

    def measure(scores):
      recovered = jnp.mean(layers.wiring_of(jnp.stack(scores)) == problem.wanted)
      return Curve(loss_fn(scores), recovered)

    def train_step(carry, _):
      scores, opt_state = carry
      grads = jax.grad(loss_fn)(scores)
      updates, opt_state = optimizer.update(grads, opt_state)
      return (optax.apply_updates(scores, updates), opt_state), measure(scores)

    # Identity wirings to start with (K = 1 score row per layer).
    scores = tuple(layer["scores"][0] for layer in problem.copy.values() if "scores" in layer)
    (scores, _), curve = jax.lax.scan(
      train_step, (scores, optimizer.init(scores)), length=args.num_steps
    )
    return jax.tree.map(jnp.append, curve, measure(scores))

  return jax.jit(jax.vmap(recover_one))(problems)


def write_results(curve: Curve, seeds: list[int], out_dir: pathlib.Path) -> pathlib.Path:
  """Writes the per-seed curves as CSV and a two-panel plot; returns the plot's path."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  out_dir.mkdir(parents=True, exist_ok=True)
  loss, recovered = np.asarray(curve.loss), np.asarray(curve.recovered)
  steps = np.arange(loss.shape[1])
  with open(out_dir / "permutation_recovery.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["seed", "step", "mse_to_teacher", "fraction_recovered"])
    for i, seed in enumerate(seeds):
      writer.writerows((seed, t, loss[i, t], recovered[i, t]) for t in steps)

  fig, (ax_loss, ax_rec) = plt.subplots(1, 2, figsize=(9, 3.2))
  for i, seed in enumerate(seeds):
    ax_loss.semilogy(steps, np.maximum(loss[i], 1e-12), lw=1, label=f"seed {seed}")
    ax_rec.plot(steps, recovered[i], lw=1)
  ax_loss.set(
    xlabel="SGD step (scores only)", ylabel="MSE to teacher (floor 1e-12)", title="Function gap"
  )
  ax_rec.set(xlabel="SGD step", ylabel="fraction", title="Neurons wired back", ylim=(0, 1.05))
  ax_loss.legend(fontsize=7)
  fig.tight_layout()
  path = out_dir / "permutation_recovery.png"
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--width", type=int, default=16, help="hidden neurons per layer")
  parser.add_argument("--num-hidden", type=int, default=1, help="permuted hidden layers")
  parser.add_argument("--num-inputs", type=int, default=8, help="input features")
  parser.add_argument("--num-samples", type=int, default=512, help="fixed batch of inputs")
  parser.add_argument(
    "--swap-fraction",
    type=float,
    default=1.0,
    help="fraction of neighbour pairs swapped in each hidden layer",
  )
  parser.add_argument("--tau", type=float, default=0.05, help="SoftSort temperature")
  parser.add_argument("--learning-rate", type=float, default=0.01, help="SGD step size")
  parser.add_argument("--num-steps", type=int, default=3000, help="SGD steps")
  parser.add_argument("--seed", type=int, default=0, help="first seed")
  parser.add_argument("--num-seeds", type=int, default=6, help="seeds, run as one vmapped job")
  parser.add_argument(
    "--out", type=pathlib.Path, default=pathlib.Path("results"), help="output folder"
  )
  args = parser.parse_args(argv)
  if args.num_seeds < 1:
    parser.error("--num-seeds must be >= 1")
  if args.num_hidden < 1:
    parser.error("--num-hidden must be >= 1")
  if args.width < 2 or args.width % 2:
    parser.error("--width must be an even number >= 2")
  if not 0.0 <= args.swap_fraction <= 1.0:
    parser.error("--swap-fraction must be in [0, 1]")
  if args.tau <= 0 or args.learning_rate <= 0 or args.num_steps < 1:
    parser.error("--tau and --learning-rate must be > 0 and --num-steps >= 1")
  return args


def main(argv: list[str] | None = None) -> Curve:
  args = parse_args(argv)
  seeds = list(range(args.seed, args.seed + args.num_seeds))
  start = time.perf_counter()
  curve = jax.block_until_ready(recover(args))
  seconds = time.perf_counter() - start
  print(
    f"A {args.width}-wide MLP with {args.num_hidden} permuted hidden layer(s); in its copy, "
    f"{args.swap_fraction:.0%} of neighbouring neuron pairs are swapped.\n"
    f"Only the copy's score vectors are trained (SGD, {args.num_steps} steps, tau "
    f"{args.tau}); {len(seeds)} seeds in one vmapped job.\n"
  )
  print(f"{'step':>6}  {'median MSE':>11}  {'neurons wired back (mean)':>26}")
  for step in np.unique(np.linspace(0, args.num_steps, 11).astype(int)):
    print(
      f"{step:>6}  {float(np.median(curve.loss[:, step])):>11.3e}  "
      f"{float(np.mean(curve.recovered[:, step])):>26.1%}"
    )
  exact = np.asarray(curve.recovered[:, -1] == 1.0)
  print(
    f"\nFunction recovered exactly (every neuron wired back, MSE "
    f"{float(np.max(curve.loss[exact, -1], initial=0.0)):.1e}) in {exact.sum()} of "
    f"{len(seeds)} seeds: {[s for s, ok in zip(seeds, exact, strict=True) if ok]}."
  )
  path = write_results(curve, seeds, args.out)
  print(f"{seconds:.1f} s. Plot: {path}; curves: {path.with_suffix('.csv')}")
  return curve


if __name__ == "__main__":
  main()
