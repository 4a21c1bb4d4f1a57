"""rewirejax: continual reinforcement learning by rewiring neurons, in pure JAX."""

from rewirejax.layers import PermutedDense, PermutedLinear, permute, softsort

__all__ = ["PermutedDense", "PermutedLinear", "permute", "softsort"]
__version__ = "0.1.0"
