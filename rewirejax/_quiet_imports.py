"""Imports MJX and brax once, without the noise they print about parts rewirejax does not use.

MJX prints ``Failed to import warp: ...`` and ``Failed to import mujoco_warp: ...`` on import
when its optional Warp backend is not installed, and brax warns, on every model it loads, that
its own pipelines are not maintained. Neither says anything to a rewirejax user, so both are
dropped here; anything else the imports print or warn still comes through.
"""

from __future__ import annotations

import contextlib
import io
import warnings

_OPTIONAL_BACKEND_NOISE = ("Failed to import warp:", "Failed to import mujoco_warp:")

with contextlib.redirect_stdout(io.StringIO()) as _printed:
  import brax.envs  # noqa: F401
  import mujoco.mjx  # noqa: F401
for _line in _printed.getvalue().splitlines():
  if not _line.startswith(_OPTIONAL_BACKEND_NOISE):
    print(_line)

warnings.filterwarnings(
  "ignore",
  message="Brax System, piplines and environments are not actively being maintained",
  category=UserWarning,
)
