"""Task environments: Brax locomotion tasks whose physics are picked by a traced task id."""

from rewirejax import _quiet_imports  # noqa: F401  (before brax: see there)

# isort: split

from rewirejax.envs.tasks import *  # noqa: F403  (the public names are tasks.__all__)
from rewirejax.envs.tasks import __all__  # noqa: F401
