"""Training-free proxies: HT-SR power-law alpha per layer, AlphaLoRA allocation, small-value proportions."""

from .allocation import alphalora_allocation

__all__ = ["alphalora_allocation"]
