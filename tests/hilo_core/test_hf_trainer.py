"""hilo_core.hf_trainer with the real transformers.Trainer and TRL's SFTTrainer on a tiny Llama.

The loss falls, the aux loss is in the logs and in the loss (checked against cross-entropy computed here plus
the routers' own losses, with and without gradient accumulation), and a checkpoint's hilo adapters reload on a
fresh base model to the same logits.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from hilo_core import LayerSpec, MoLoRAConfig, RouterSpec, inject, load_adapters, molora_modules
from hilo_core.hf_trainer import MoLoRACallback, checkpoint_adapters, with_molora
from tiny_models import COLOURS, THINGS

CONFIG = MoLoRAConfig(layers=(
    LayerSpec(ranks=(2, 4), router=RouterSpec(kind="topk", top_k=1)),
    LayerSpec(ranks=(4, 4, 4), router=RouterSpec(kind="topk", top_k=2)),
    LayerSpec(ranks=(8,), router=RouterSpec(kind="dense")),
    LayerSpec(ranks=(2, 2, 8), router=RouterSpec(kind="threshold")),
), lora_dropout=0.0)
SENTENCES = [f"the colour of {thing} is {colour}" for thing, colour in zip(THINGS, COLOURS)] * 4


def injected(model_dir):
    torch.manual_seed(0)
    return inject(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), CONFIG)


def token_rows(tokenizer) -> Dataset:
    ids = [tokenizer(s)["input_ids"] for s in SENTENCES]
    width = max(map(len, ids))
    rows = [row + [tokenizer.pad_token_id] * (width - len(row)) for row in ids]
    return Dataset.from_list([{"input_ids": r, "attention_mask": [int(t != tokenizer.pad_token_id) for t in r],
                               "labels": [t if t != tokenizer.pad_token_id else -100 for t in r]} for r in rows])


def training_args(out, steps: int, **extra) -> dict:
    return dict(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-2,
                lr_scheduler_type="constant", logging_steps=10, save_steps=steps, save_only_model=True, report_to=[], use_cpu=True,
                disable_tqdm=True, seed=0, **extra)


def cross_entropy(model, rows: Dataset) -> float:
    """Mean next-token cross-entropy over ``rows`` in eval mode (no aux term, no dropout)."""
    model.eval()
    with torch.no_grad():
        return float(model(input_ids=torch.tensor(rows["input_ids"]), labels=torch.tensor(rows["labels"])).loss)


def test_trainer_trains_logs_aux_loss_and_checkpoints_reload(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model, rows = injected(tiny_model_dir), token_rows(tokenizer)
    before = cross_entropy(model, rows)
    trainer = with_molora(Trainer)(model=model, args=TrainingArguments(**training_args(tmp_path, 40)),
                                   train_dataset=rows, aux_weight=0.01)
    trainer.train()
    assert cross_entropy(model, rows) < before - 0.5  # loss falls (about 4.48 -> 3.72)
    logged = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    assert len(logged) == 4 and logged[-1]["loss"] < logged[0]["loss"]
    assert all(h["aux_loss"] > 0 for h in logged)  # the routers' balance loss is logged, and positive
    fresh = load_adapters(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                          checkpoint_adapters(tmp_path, 40))
    ids = torch.tensor(rows["input_ids"][:4])
    model.eval()
    with torch.no_grad():
        assert torch.equal(fresh.eval()(ids).logits, model(ids).logits)


def test_the_training_loss_is_cross_entropy_plus_weighted_aux(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = injected(tiny_model_dir).train()
    trainer = with_molora(Trainer)(model=model, args=TrainingArguments(**training_args(tmp_path, 1)), aux_weight=0.5)
    trainer.molora.on_train_begin(None, None, None, model=model)
    batch = token_rows(tokenizer)[:4]
    inputs = {"input_ids": torch.tensor(batch["input_ids"]), "labels": torch.tensor(batch["labels"])}
    loss = trainer.compute_loss(model, dict(inputs))
    logits = model(**inputs).logits
    targets = inputs["labels"][:, 1:].flatten()
    ce_sum = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets, ignore_index=-100, reduction="sum")
    routers = sum(m.aux_loss for _, m in molora_modules(model) if not m.disabled)
    assert float(routers.detach()) > 0
    n_tokens = int((targets != -100).sum())
    torch.testing.assert_close(loss, ce_sum / n_tokens + 0.5 * routers)
    # gradient accumulation over 4 micro-batches with the loss normalised over all of them (num_items_in_batch):
    # Trainer does not divide such a loss, so the aux term is averaged here
    trainer.current_gradient_accumulation_steps = 4
    loss = trainer.compute_loss(model, dict(inputs), num_items_in_batch=torch.tensor(4 * n_tokens))
    torch.testing.assert_close(loss, ce_sum / (4 * n_tokens) + 0.5 * routers / 4)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(trainer.compute_loss(model, dict(inputs)), ce_sum / n_tokens)  # evaluation: no aux
    trainer.molora.on_train_end(None, None, None)


def test_callback_refuses_a_model_without_adapters(tiny_model_dir):
    bare = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="call hilo_core.inject"):
        MoLoRACallback().on_train_begin(None, None, None, model=bare)
    with pytest.raises(ValueError, match="aux_weight must be a finite number >= 0, got -1"):
        with_molora(Trainer)(model=bare, aux_weight=-1)


def test_trl_sft_trainer(tiny_model_dir, tmp_path):
    trl = pytest.importorskip("trl")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model, rows = injected(tiny_model_dir), token_rows(tokenizer)
    before = cross_entropy(model, rows)
    config = trl.SFTConfig(**training_args(tmp_path, 20) | {"logging_steps": 5}, max_length=16, dataset_text_field="text")
    trainer = with_molora(trl.SFTTrainer)(model=model, args=config, processing_class=tokenizer, aux_weight=0.01,
                                          train_dataset=Dataset.from_list([{"text": s} for s in SENTENCES]))
    # TRL computes its loss from its fused LM head, not from the model's loss: the aux term must still be in it
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.molora.on_train_begin(None, None, None, model=model.train())
    with_aux = trainer.compute_loss(model, dict(inputs))
    routers = sum(m.aux_loss for _, m in molora_modules(model) if not m.disabled)
    trainer.aux_weight = 0.0
    torch.testing.assert_close(with_aux - trainer.compute_loss(model, dict(inputs)), 0.01 * routers)
    trainer.molora.on_train_end(None, None, None)
    trainer.aux_weight = 0.01
    trainer.train()
    assert cross_entropy(model, rows) < before - 0.3
    logged = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    assert len(logged) == 4 and all(h["aux_loss"] > 0 for h in logged)
    assert (checkpoint_adapters(tmp_path, 20) / "adapters.safetensors").is_file()
