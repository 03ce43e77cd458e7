"""Greedy answers with transformers directly; torch, transformers and peft are imported here only.

Why not LLaMA-Factory's `do_predict`: it needs jieba, nltk and rouge_chinese, starts in ~10 s, and
reports BLEU/ROUGE we do not use; here batching and stop tokens are ours. Fidelity to training is kept
by the exact glm_ocr prompt (data/template.py) and by resizing images with LLaMA-Factory's arithmetic at the
training `image_max_pixels` before the processor sees them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.data.template import STOP_TOKENS, build_prompt
from glmocr_lf.evaluation.dataset import EvalSample
from glmocr_lf.runtime.errors import GlmocrLfError, MissingDependencyError


@dataclass(frozen=True)
class LoadedModel:
    torch: Any
    processor: Any
    model: Any

    @property
    def device(self) -> str:
        return str(self.model.device)


def pick_device(torch: Any, device: str) -> Any:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise GlmocrLfError(f"--device {device}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise GlmocrLfError(f"--device {device}: CUDA is not available", hint="pass --device cpu")
    return chosen


def load_model(model_name: str, adapter: Path | None, device_name: str, *, verbose: bool = False) -> LoadedModel:
    """The model on its device. transformers' own talk (loading messages, warnings, its progress
    bars) only with `verbose`: otherwise our progress bar is the one on stderr."""
    try:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from transformers.utils import logging as hf_logging
    except ImportError as err:
        raise MissingDependencyError(err.name or "torch", "run eval") from None
    if verbose:
        hf_logging.set_verbosity_info()
        hf_logging.enable_progress_bar()
    else:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    device = pick_device(torch, device_name)
    dtype = torch.float32
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16  # GLM gives NaNs in fp16
    try:
        processor = AutoProcessor.from_pretrained(model_name)
        model = AutoModelForImageTextToText.from_pretrained(model_name, dtype=dtype)
    except (OSError, ValueError) as err:
        raise GlmocrLfError(f"{model_name}: cannot load the model or processor ({err})",
                            hint="pass a model directory or a downloaded HF id") from None
    if not hasattr(processor, "image_processor"):
        raise GlmocrLfError(f"{model_name}: no image processor (processor files missing?)")
    if adapter is not None:
        model = _with_adapter(model, adapter)
    model.to(device).eval()
    return LoadedModel(torch, processor, model)


def _with_adapter(model: Any, adapter: Path) -> Any:
    try:
        from peft import PeftModel
    except ImportError:
        raise MissingDependencyError("peft", "apply --adapter") from None
    try:
        return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except (OSError, ValueError) as err:
        raise GlmocrLfError(f"{adapter}: cannot load the adapter ({err})") from None


def _images(batch: Sequence[EvalSample], max_pixels: int, min_pixels: int) -> list[Any]:
    from PIL import Image

    from glmocr_lf.data.resize import lf_preprocess_image

    images = []
    for sample in batch:
        for path in sample.images:
            with Image.open(path) as image:
                image.load()  # the file closes here; a no-op resize returns this same image
                images.append(lf_preprocess_image(image, max_pixels, min_pixels))
    return images


def generate(loaded: LoadedModel, samples: Sequence[EvalSample], *, batch_size: int, max_pixels: int,
             min_pixels: int, max_new_tokens: int,
             repetition_penalty: float) -> Iterator[tuple[Sequence[EvalSample], list[str]]]:
    """Each batch of samples with its answers, as soon as they are decoded."""
    torch, processor, model = loaded.torch, loaded.processor, loaded.model
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"  # batched generation continues every row from its last token
    stop_ids = [tokenizer.eos_token_id] + [tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS]
    stop_ids = [i for i in stop_ids if isinstance(i, int) and i != tokenizer.unk_token_id]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        images = _images(batch, max_pixels, min_pixels)
        inputs = processor(text=[build_prompt(s.user_text, s.system) for s in batch], images=images or None,
                           return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(model.device)
        with torch.inference_mode():
            output = model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                                    repetition_penalty=repetition_penalty, eos_token_id=stop_ids,
                                    pad_token_id=pad_id)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        yield batch, [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
