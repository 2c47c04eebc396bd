"""Shared facts for the spaces tests: layer counts, a fixed alpha profile, Llama-2-7B linear shapes."""

LAYER_COUNTS = (6, 24, 30, 32)
# Llama-2-7B: (d_in, d_out) per adapted linear; PAPERS.md gives ~105.6 M trainable for any 160-expert r=8 top-2.
LLAMA7B_SHAPES = {
    "q_proj": (4096, 4096), "k_proj": (4096, 4096), "v_proj": (4096, 4096), "o_proj": (4096, 4096),
    "gate_proj": (4096, 11008), "up_proj": (4096, 11008), "down_proj": (11008, 4096),
}


def alphas_for(n_layers: int) -> list[float]:
    """Alphas rising gently with depth, so AlphaLoRA's allocation stays within 1..8 experts per layer."""
    return [2.0 + 0.5 * i / n_layers for i in range(n_layers)]
