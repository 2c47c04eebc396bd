"""Training-free proxies: HT-SR power-law alpha per layer, AlphaLoRA allocation, small-value proportions."""

from .alphas import LayerAlphas, layer_alphas, target_weights
from .allocation import alphalora_allocation
from .cache import cached_json, proxies_cache_dir, weights_digest
from .esd import esd, esd_many
from .hill import PowerLawFit, hill_alpha, power_law_fit
from .small_values import small_value_proportion

__all__ = [
    "LayerAlphas", "PowerLawFit", "alphalora_allocation", "cached_json", "esd", "esd_many", "hill_alpha",
    "layer_alphas", "power_law_fit", "proxies_cache_dir", "small_value_proportion", "target_weights",
    "weights_digest",
]
