"""MoLoRA compute paths: plain-torch references and the one place that dispatches between them."""

from .dispatch import molora_delta

__all__ = ["molora_delta"]
