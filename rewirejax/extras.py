"""Optional extras (``pip install -e ".[name]"``): the error raised when one is missing.

Kept apart from the code that needs an extra, so the command line can catch it without
importing that code.
"""


class MissingExtraError(ImportError):
  """An optional extra is not installed; the message names the command that installs it."""
