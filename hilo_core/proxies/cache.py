"""On-disk cache of proxy results: JSON files under ``cache_dir()/proxies``, keyed by weights and arguments.

Proxies are computed once per model (docs/architecture.md); the key hashes the weights themselves, so a fine-tuned
or edited model never reuses a stale result, whatever it is called.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Mapping, TypeVar

T = TypeVar("T")

import torch

from ..models import cache_dir

# Bump when a proxy's algorithm changes, so results computed by older code are not served.
CACHE_VERSION = 2  # 2: layer_alphas stores modules per layer


def proxies_cache_dir() -> Path:
    """Folder of cached proxy results: ``cache_dir()/proxies``."""
    return cache_dir() / "proxies"


def _tensor_digest(name: str, tensor: torch.Tensor) -> str:
    t = tensor.detach().to("cpu").contiguous()
    h = hashlib.blake2b(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode(), digest_size=16)
    h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """Hex digest of names, dtypes, shapes and bytes of ``tensors`` (blake2b; hashlib frees the GIL, so threads)."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        parts = list(pool.map(_tensor_digest, tensors.keys(), tensors.values()))
    return hashlib.blake2b("".join(parts).encode(), digest_size=16).hexdigest()


def cached_json(key: Mapping, compute: Callable[[], dict], parse: Callable[[dict], T] = lambda d: d) -> T:
    """``parse(compute())`` once per ``key`` (a JSON-able mapping); later calls parse the stored result.

    A file that is unreadable, holds another key (a hash collision) or that ``parse`` rejects (written by
    another version of the code) is recomputed and overwritten.
    """
    full_key = {"version": CACHE_VERSION, **key}
    text = json.dumps(full_key, sort_keys=True)
    path = proxies_cache_dir() / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"
    try:
        stored = json.loads(path.read_text())
        if stored["key"] == json.loads(text):
            return parse(stored["result"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"key": full_key, "result": result}, indent=1))
    tmp.replace(path)
    return parse(result)
