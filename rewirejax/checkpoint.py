"""Atomic orbax checkpoints of the (seed-batched) train state plus the host loop's progress.

Orbax writes each step into a temporary folder and renames it when complete, so a crash
never leaves a half-written checkpoint behind; ``latest`` only sees finished ones. Typed PRNG
keys are stored as their raw ``uint32`` data and re-wrapped on restore. Arrays with no
elements (a Meta-World model's empty height field, say) hold no data, which orbax refuses to
write: they are left out and rebuilt from the restore's template.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


def _is_key(x: Any) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _keys_to_data(tree: Any) -> Any:
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract_without_keys(tree: Any) -> Any:
  def to_abstract(x):
    sharding = getattr(x, "sharding", None)  # Restored as ``like`` is laid out now.
    if _is_key(x):
      x = jax.eval_shape(jax.random.key_data, x)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  return jax.tree.map(to_abstract, tree)


def _is_empty(x: Any) -> bool:
  return hasattr(x, "shape") and math.prod(x.shape) == 0


def _without_empty(tree: Any) -> Any:
  """``tree`` with its zero-size arrays as ``None`` (an empty subtree)."""
  return jax.tree.map(lambda x: None if _is_empty(x) else x, tree)


def _with_empty(restored: Any, like: Any) -> Any:
  """``restored`` with the zero-size arrays of ``like`` back in their places."""

  def empty(x):
    array = jnp.zeros(x.shape, x.dtype)
    sharding = getattr(x, "sharding", None)
    return array if sharding is None else jax.device_put(array, sharding)

  def fill(r, x):  # ``x`` is None where ``like`` itself holds an empty subtree.
    return empty(x) if r is None and x is not None else r

  return jax.tree.map(fill, restored, like, is_leaf=lambda r: r is None)


def _data_to_keys(restored: Any, like: Any) -> Any:
  """Typed keys re-wrapped as in ``like`` (an abstract ``like``'s keys: the default impl)."""

  def wrap(r, x):
    impl = jax.random.key_impl(x) if isinstance(x, jax.Array) else None
    return jax.random.wrap_key_data(r, impl=impl)

  return jax.tree.map(lambda r, x: wrap(r, x) if _is_key(x) else r, restored, like)


def _layout(tree: Any) -> list[tuple[tuple[int, ...], str]]:
  """The sorted (shape, dtype) of a tree's arrays (or of orbax's metadata of them)."""
  return sorted((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(tree))


class Checkpointer:
  """Saves ``(state, progress)`` pairs under ``directory/<step>``, keeping the newest few."""

  def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 2):
    self.directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state: Any, progress: dict[str, Any]) -> None:
    """Writes one checkpoint and waits until it is complete on disk."""
    args = ocp.args.Composite(
      state=ocp.args.StandardSave(_keys_to_data(_without_empty(state))),
      progress=ocp.args.JsonSave(progress),
    )
    self._manager.save(step, args=args, force=True)
    self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def progress(self, step: int | None = None) -> dict[str, Any]:
    """The progress saved with the newest (or ``step``) checkpoint, without its state."""
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))
    return dict(restored.progress)

  def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores the newest (or ``step``) checkpoint into the structure of ``like`` (arrays,
    or ``jax.ShapeDtypeStruct``s with their shardings)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no finished checkpoint in {self.directory}")
    abstract = _without_empty(_abstract_without_keys(like))
    stored = ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state")
    stored = stored.item_metadata.tree
    if _layout(stored) != _layout(abstract):  # Checked before orbax reads (and fails) async.
      raise ValueError(
        f"the checkpoint {self.directory / str(step)} does not fit this run's state (written "
        "by another version of rewirejax or for another configuration): resume it with the "
        f"version that wrote it, or delete {self.directory}."
      )
    args = ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()
    )
    restored = self._manager.restore(step, args=args)
    state = _with_empty(restored.state, like)
    return _data_to_keys(state, like), dict(restored.progress)

  def close(self) -> None:
    self._manager.close()
