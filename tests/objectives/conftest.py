"""A tiny random Llama with a character tokenizer, saved once per session: fast stand-in for SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

N_LAYERS = 2  # test_evaluate.py builds configs for this many layers


def build_tiny_model(folder: Path) -> Path:
    """Save a 2-layer, hidden-64 Llama and a tokenizer whose tokens are ' x' (space + char) or one char.

    ' A' is one token and ' Iraq' four, so tasks mix one-token and multi-token choices as real ones do.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = [chr(i) for i in range(32, 127)] + ["\n"]
    vocab = {"<pad>": 0, "<unk>": 1}
    for token in chars + [" " + c for c in chars if c != " "]:
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r" ?[^ ]| "), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=N_LAYERS,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=0)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="session")
def tiny(tiny_model_dir: str):
    """``(model, tokenizer)`` as ``evaluate`` sees them (the per-process cache)."""
    from objectives import base_model

    return base_model(tiny_model_dir)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core box OpenMP's spinning second thread made these runs
    8-40x slower (tiny and embedded model alike); on an idle box one thread costs far less than that."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
