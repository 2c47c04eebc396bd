import math

import pytest
import torch

from hilo_core import MoLoRAConfig, config_trainable, module_shapes, molora_modules
from objectives import Fidelity, base_model, evaluate


@pytest.mark.slow
def test_the_embedded_model_fine_tunes_a_few_steps_and_is_restored():
    model, _ = base_model("default")
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    config = MoLoRAConfig.uniform(30, 2, 2)
    fidelity = Fidelity(steps=2, batch_size=2, max_eval_examples=8, max_test_examples=0, max_length=32)
    metrics = evaluate(config, "analogy", fidelity)
    assert metrics.steps == 2 and math.isfinite(metrics.final_loss) and metrics.test_accuracy is None
    assert metrics.trainable_params == config_trainable(config, module_shapes(model, config.target_modules))
    assert metrics.accuracy > 0.25  # a real pretrained model: zero-shot it is far above chance already
    assert not list(molora_modules(model))
    assert all(torch.equal(p, before[n]) for n, p in model.state_dict().items())
