"""hilo_core: MoLoRA layers with per-expert ranks, routers, injection, accounting and proxies."""

from .accounting import (
    aux_loss, config_active, config_trainable, count_active, count_trainable, module_shapes, parameter_table,
    track_activity,
)
from .config import LLAMA_TARGETS, ROUTER_KINDS, LayerSpec, MoLoRAConfig, RouterSpec
from .elastic import ElasticMoLoRALinear, export_subconfig, inject_elastic, set_subconfig
from .inject import eject, find_decoder_layers, inject, injected_config, molora_modules
from .io import load_adapters, save_adapters
from .layers import MoLoRALinear
from .routers import DenseRouter, ThresholdRouter, TopKRouter, TopPRouter

__all__ = [
    "LLAMA_TARGETS", "ROUTER_KINDS", "DenseRouter", "ElasticMoLoRALinear", "LayerSpec", "MoLoRAConfig",
    "MoLoRALinear", "RouterSpec", "ThresholdRouter", "TopKRouter", "TopPRouter", "aux_loss", "config_active",
    "config_trainable", "count_active", "module_shapes",
    "count_trainable", "eject", "export_subconfig", "find_decoder_layers", "inject", "inject_elastic",
    "injected_config", "load_adapters", "molora_modules", "parameter_table", "save_adapters", "set_subconfig",
    "track_activity",
]
