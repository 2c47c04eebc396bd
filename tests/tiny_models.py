"""Tiny models built in code for tests (fast, no downloads)."""

from __future__ import annotations

import torch


def tiny_llama(n_layers: int = 4, *, dtype: torch.dtype = torch.float32, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=n_layers, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
    return LlamaForCausalLM(config).to(dtype).eval()


def tiny_gpt2(n_layers: int = 3, *, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_embd=48, n_layer=n_layers, n_head=4, vocab_size=128, n_positions=64)).eval()


def tiny_bert(n_layers: int = 2, *, seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(hidden_size=48, num_hidden_layers=n_layers, num_attention_heads=4, intermediate_size=80,
                        vocab_size=128, max_position_embeddings=64)
    return BertModel(config).eval()
