"""Continual-learning methods as plug-ins of the one trainer (see base.Method)."""

from rewirejax.methods.base import Method, fine_tuning

__all__ = ["Method", "fine_tuning"]
