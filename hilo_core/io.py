"""Save and load adapters: a safetensors file of adapter tensors beside the MoLoRAConfig JSON."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from .config import MoLoRAConfig
from .inject import inject, injected_config, molora_modules

CONFIG_FILE = "molora_config.json"
WEIGHTS_FILE = "adapters.safetensors"


def adapter_state_dict(model: nn.Module) -> dict:
    """``{"<module>.<param>": tensor}`` for every adapter parameter, built on ``adapter_params()``."""
    return {f"{name}.{key}": p.detach().contiguous()
            for name, m in molora_modules(model) for key, p in m.adapter_params().items()}


def save_adapters(model: nn.Module, path: str | Path) -> Path:
    """Write ``molora_config.json`` and ``adapters.safetensors`` into folder ``path``."""
    config = injected_config(model)
    if config is None:
        raise ValueError("model has no MoLoRA adapters to save: call hilo_core.inject first")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(config.to_json(indent=2))
    save_file(adapter_state_dict(model), str(folder / WEIGHTS_FILE))
    return folder


def load_adapters(model: nn.Module, path: str | Path) -> nn.Module:
    """Inject the saved config into a bare ``model`` and load the saved adapter tensors exactly."""
    folder = Path(path)
    for f in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / f).is_file():
            raise FileNotFoundError(f"adapter folder {folder} lacks {f}")
    config = MoLoRAConfig.from_json((folder / CONFIG_FILE).read_text())
    inject(model, config)
    tensors = load_file(str(folder / WEIGHTS_FILE))
    params = {f"{name}.{key}": p for name, m in molora_modules(model) for key, p in m.adapter_params().items()}
    if set(tensors) != set(params):
        missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        raise ValueError(f"{folder / WEIGHTS_FILE} does not match the model: missing {missing[:3]}, "
                         f"unexpected {extra[:3]}")
    for key, tensor in tensors.items():
        if params[key].shape != tensor.shape:
            raise ValueError(f"{key}: saved shape {tuple(tensor.shape)} != model shape {tuple(params[key].shape)}")
        params[key].data.copy_(tensor)
    return model
