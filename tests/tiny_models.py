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


def save_tiny_causal_lm(folder, words, *, n_layers: int = 4, seed: int = 0):
    """A tiny Llama and a word-level tokenizer over ``words`` saved as an HF folder (``--model PATH``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(words) - set(specials)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    model = tiny_llama(n_layers, seed=seed)
    model.resize_token_embeddings(len(vocab))
    model.config.pad_token_id, model.config.bos_token_id, model.config.eos_token_id = 1, 2, 3
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


COLOURS = ["red", "green", "blue", "black", "white", "pink", "grey", "brown"]
THINGS = ["apple", "leaf", "sky", "coal", "snow", "rose", "ash", "bark"]
COLOUR_WORDS = COLOURS + THINGS + ["the", "colour", "of", "is"] + [f"q{i}" for i in range(64)]


def write_colours_task(path):
    """A learnable multiple-choice JSONL task: 'the colour of X is' -> X's colour among 3 distractors."""
    import json
    import random

    rng = random.Random(0)
    rows = []
    for i in range(64):
        k = i % len(THINGS)
        choices = rng.sample([c for c in COLOURS if c != COLOURS[k]], 3) + [COLOURS[k]]
        rng.shuffle(choices)
        rows.append({"question": f"q{i} the colour of {THINGS[k]} is", "choices": choices, "answer": COLOURS[k]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path
