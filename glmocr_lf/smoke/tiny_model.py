"""A tiny, randomly initialised GLM-OCR built offline from transformers' own classes.

Same architecture and file layout as `zai-org/GLM-OCR` (GlmOcrForConditionalGeneration, a GLM
tokenizer with its special tokens, a Glm46VProcessor with image and video processors), scaled down
to ~230k parameters so that the real `llamafactory-cli` trains, exports and reloads it on a CPU in
seconds. Used by `glmocr-lf smoke-model`, `glmocr-lf smoke` and the end-to-end tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glmocr_lf.runtime.fsutil import ensure_dir

# GLM's special tokens, in the order the real tokenizer has them.
SPECIAL_TOKENS = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>",
    "<|begin_of_video|>", "<|end_of_video|>", "<|image|>", "<|video|>", "<think>", "</think>",
)

# A GLM-style chat template: image before text, `<|assistant|>` opens the answer.
CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}<|system|>\n{{ m['content'] }}"
    "{%- elif m['role'] == 'user' -%}<|user|>\n"
    "{%- if m['content'] is string -%}{{ m['content'] }}"
    "{%- else -%}{%- for c in m['content'] -%}"
    "{%- if c['type'] == 'image' -%}<|begin_of_image|><|image|><|end_of_image|>"
    "{%- elif c['type'] == 'text' -%}{{ c['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- elif m['role'] == 'assistant' -%}<|assistant|>\n{{ m['content'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>\n{%- endif -%}"
)

_CORPUS = (
    "Text Recognition: Table Recognition: Formula Recognition: Code Generation:\n"
    "```rdkit\nC1=CC=CC=C1 CC(=O)O c1ccccc1 N#N [Na+].[Cl-] O=C(O)C(N)CC1=CC=CC=C1\n```\n"
    "<table><tr><td>cell</td><th>head</th></tr></table> \\frac{a}{b} x^{2} + y_{i} = \\sqrt{z}\n"
    "The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
)

TINY_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}
TINY_VISION = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2}
# Small pixel budget: <= 224x224 -> <= 64 image tokens, so cutoff_len 256 is safe.
TINY_MAX_PIXELS = 224 * 224
TINY_MIN_PIXELS = 28 * 28


def build_tokenizer(out_dir: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t != "<|endoftext|>"],
        padding_side="left", chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def save_processor(out_dir: Path, tokenizer: Any) -> None:
    """GLM-OCR's processor (image and video processors, chat template) sized for the tiny model."""
    from transformers import Glm46VImageProcessor, Glm46VProcessor, Glm46VVideoProcessor

    size = {"shortest_edge": TINY_MIN_PIXELS, "longest_edge": TINY_MAX_PIXELS}
    patches = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}
    processor = Glm46VProcessor(
        image_processor=Glm46VImageProcessor(size=size, **patches),
        tokenizer=tokenizer,
        video_processor=Glm46VVideoProcessor(size=size, **patches),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)


def build_tiny_glm_ocr(out_dir: Path, *, seed: int = 0, with_mtp: bool = False) -> Path:
    """Write a loadable tiny GLM-OCR (config, safetensors, tokenizer, processor) into `out_dir`.

    With `with_mtp`, the checkpoint also holds a multi-token-prediction layer (`layers.<N>.*`, N =
    num_hidden_layers), as the real checkpoint does and transformers ignores on load.
    """
    import torch
    from transformers import GlmOcrConfig, GlmOcrForConditionalGeneration

    out_dir = ensure_dir(Path(out_dir))
    tokenizer = build_tokenizer(out_dir)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64

    config = GlmOcrConfig(
        text_config={
            **TINY_TEXT, "vocab_size": vocab_size, "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [2, 3, 3], "partial_rotary_factor": 1.0},
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={**TINY_VISION, "out_hidden_size": TINY_TEXT["hidden_size"],
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"], image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"], video_end_token_id=ids["<|end_of_video|>"],
    )
    torch.manual_seed(seed)
    model = GlmOcrForConditionalGeneration(config)
    model.generation_config.eos_token_id = [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards: 100%" is not ours to print
    try:
        model.save_pretrained(out_dir)
    finally:
        if bars:
            hf_logging.enable_progress_bar()

    save_processor(out_dir, tokenizer)
    if with_mtp:
        add_mtp_layer(out_dir, seed=seed)
    return out_dir


def mtp_prefix(num_hidden_layers: int) -> str:
    return f"model.language_model.layers.{num_hidden_layers}."


def add_mtp_layer(model_dir: Path, *, seed: int = 0) -> list[str]:
    """Append MTP tensors (a copy-shaped decoder layer plus GLM's MTP projections) to the checkpoint."""
    import torch
    from safetensors.torch import load_file, save_file

    config = json.loads((model_dir / "config.json").read_text())
    layers = config["text_config"]["num_hidden_layers"]
    hidden = config["text_config"]["hidden_size"]
    path = model_dir / "model.safetensors"
    tensors = load_file(path)
    generator = torch.Generator().manual_seed(seed + 1)
    added = {}
    for key, value in tensors.items():
        if key.startswith("model.language_model.layers.0."):
            new_key = mtp_prefix(layers) + key[len("model.language_model.layers.0."):]
            added[new_key] = torch.randn(value.shape, generator=generator).to(value.dtype)
    prefix = mtp_prefix(layers)
    added[prefix + "eh_proj.weight"] = torch.randn((hidden, 2 * hidden), generator=generator)
    added[prefix + "enorm.weight"] = torch.ones(hidden)
    added[prefix + "hnorm.weight"] = torch.ones(hidden)
    tensors.update(added)
    save_file(tensors, path, metadata={"format": "pt"})
    return sorted(added)
