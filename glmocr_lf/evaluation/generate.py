"""`eval run`: greedy answers for every sample of a dataset, with transformers directly.

Why not LLaMA-Factory's `do_predict`: it needs jieba, nltk and rouge_chinese, starts in ~10 s, and
reports BLEU/ROUGE we do not use; here batching and stop tokens are ours. Fidelity to training is kept
by building the exact glm_ocr template string (data/template.py, from LLaMA-Factory's data/template.py) and resizing images
with LLaMA-Factory's arithmetic at the training `image_max_pixels` before the processor sees them.
torch, transformers and peft are imported only inside `run_evaluation`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glmocr_lf.data import jsonl, template
from glmocr_lf.data.info import Layout
from glmocr_lf.data.report import CheckOptions
from glmocr_lf.data.validate import resolve_source, validate_file
from glmocr_lf.evaluation.predictions import (
    Prediction,
    detect_task,
    read_predictions,
    write_predictions,
)
from glmocr_lf.runtime.constants import (
    DATA_DIR,
    LF_DEFAULT_IMAGE_MAX_PIXELS,
    LF_DEFAULT_IMAGE_MIN_PIXELS,
)
from glmocr_lf.runtime.errors import DataError, GlmocrLfError, MissingDependencyError
from glmocr_lf.runtime.fsutil import atomic_write_text, check_dir_target
from glmocr_lf.runtime.modelfiles import stale_merge
from glmocr_lf.runtime.records import (
    EvalRecord,
    eval_record_path,
    read_eval_record,
    read_export_record,
    read_train_record,
    write_eval_record,
)

if TYPE_CHECKING:
    from glmocr_lf.evaluation.scoretypes import Scores

PREDICTIONS_FILE = "predictions.jsonl"
SCORES_FILE = "scores.json"


@dataclass(frozen=True)
class EvalSample:
    id: str
    system: str | None
    user_text: str  # with `<image>` placeholders
    images: list[Path]
    reference: str


@dataclass(frozen=True)
class DatasetSource:
    file: Path
    media_dir: Path
    layout: Layout  # how the registered entry (or our default, for a file) names the keys


@dataclass(frozen=True)
class RunOptions:
    model: str
    dataset: str
    out_dir: Path
    adapter: Path | None = None
    data_dir: Path = Path(DATA_DIR)
    max_samples: int | None = None
    max_new_tokens: int = 2048
    repetition_penalty: float = 1.0
    image_max_pixels: int | None = None
    image_min_pixels: int = LF_DEFAULT_IMAGE_MIN_PIXELS
    batch_size: int = 1
    device: str = "auto"
    force: bool = False
    resume: bool = False


@dataclass(frozen=True)
class RunResult:
    predictions_path: Path
    scores_path: Path
    scores: Scores
    image_max_pixels: int
    image_max_pixels_source: str


# --------------------------------------------------------------------------------------------------
# Pure parts: dataset, resolution, prompt


def default_out_dir(model: str, adapter: Path | None) -> Path:
    name = Path(model.rstrip("/")).name or "model"
    if adapter is not None:
        name += "-" + (Path(str(adapter).rstrip("/")).name or "adapter")
    return Path("evals") / re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def resolve_dataset(dataset: str, data_dir: Path) -> DatasetSource:
    """A ShareGPT file given directly, or a name registered in `data_dir`/dataset_info.json."""
    path, options = resolve_source(dataset, data_dir, CheckOptions())
    return DatasetSource(path, options.media_dir or path.parent, options.layout)


def load_samples(source: DatasetSource, max_samples: int | None = None) -> list[EvalSample]:
    """Single-turn samples (optional system, one user turn, one answer) with resolved image paths,
    checked by the data validator (structure, every image readable) before any model loads."""
    options = CheckOptions(media_dir=source.media_dir, allow_outside=True, layout=source.layout)
    report = validate_file(source.file, options)
    report.raise_for_errors(f"{source.file}", limit_to=max_samples,
                            hint=f"glmocr-lf data validate {source.file}")
    assert report.sample_file is not None
    records = report.sample_file.samples
    if max_samples is not None:
        records = records[:max_samples]  # LLaMA-Factory's max_samples: the first N
    samples = []
    for raw in records:
        messages = raw.data["messages"]
        system = messages[0]["content"] if messages[0]["role"] == "system" else None
        turns = messages[1:] if system is not None else messages
        if len(turns) != 2:
            raise DataError(f"{source.file}: sample {raw.index}: eval needs one user turn and one "
                            f"assistant answer, found {len(turns)} messages")
        images = [Path(os.path.join(source.media_dir, image)) for image in raw.data.get("images") or []]
        samples.append(EvalSample(str(raw.data.get("id", raw.index)), system, turns[0]["content"], images,
                                  turns[1]["content"]))
    return samples


def build_prompt(sample: EvalSample) -> str:
    """The glm_ocr training string up to `<|assistant|>` (data/template.py)."""
    return template.build_prompt(sample.user_text, sample.system)


def _recorded_max_pixels(directory: Path) -> tuple[int, str] | None:
    """`image_max_pixels` from what train or export recorded in `directory`, else a processor
    config hint."""
    for record in (read_train_record(directory), read_export_record(directory)):
        if record is not None and record.image_max_pixels:
            return record.image_max_pixels, str(record.path)
    for path in (directory / "preprocessor_config.json", directory / "processor_config.json"):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        nested = data.get("image_processor")
        value = data.get("image_max_pixels")
        if value is None and isinstance(nested, dict):
            value = nested.get("image_max_pixels")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, str(path)
    return None


def resolve_image_max_pixels(model: str, adapter: Path | None,
                             override: int | None) -> tuple[int, str]:
    """(pixels, where it came from): the flag, else the adapter's run record (or its parent run
    dir for a checkpoint), else the model dir's export record, else LLaMA-Factory's default."""
    if override is not None:
        return override, "--image-max-pixels"
    directories = [adapter] if adapter is not None else []
    if adapter is not None and adapter.name.startswith("checkpoint-"):
        directories.append(adapter.parent)
    directories.append(Path(model))
    for directory in directories:
        if directory.is_dir():
            found = _recorded_max_pixels(directory)
            if found:
                return found
    return LF_DEFAULT_IMAGE_MAX_PIXELS, "LLaMA-Factory's default; no training record found"


# --------------------------------------------------------------------------------------------------
# Generation


def _pick_device(torch: Any, device: str) -> Any:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise GlmocrLfError(f"--device {device}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise GlmocrLfError(f"--device {device}: CUDA is not available")
    return chosen


def _load(options: RunOptions) -> tuple[Any, Any, Any]:
    try:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from transformers.utils import logging as hf_logging
    except ImportError as err:
        raise MissingDependencyError(err.name or "torch", "run eval") from None
    hf_logging.disable_progress_bar()  # our own progress bar is the one on stderr
    device = _pick_device(torch, options.device)
    dtype = torch.float32
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16  # GLM gives NaNs in fp16
    try:
        processor = AutoProcessor.from_pretrained(options.model)
        model = AutoModelForImageTextToText.from_pretrained(options.model, dtype=dtype)
    except (OSError, ValueError) as err:
        raise GlmocrLfError(f"{options.model}: cannot load the model or processor ({err})",
                            hint="pass a model directory or a downloaded HF id") from None
    if not hasattr(processor, "image_processor"):
        raise GlmocrLfError(f"{options.model}: no image processor (processor files missing?)")
    if options.adapter is not None:
        try:
            from peft import PeftModel
        except ImportError:
            raise MissingDependencyError("peft", "apply --adapter") from None
        try:
            model = PeftModel.from_pretrained(model, str(options.adapter)).merge_and_unload()
        except (OSError, ValueError) as err:
            raise GlmocrLfError(f"{options.adapter}: cannot load the adapter ({err})") from None
    model.to(device).eval()
    return torch, processor, model


def _generate(torch: Any, processor: Any, model: Any, samples: Sequence[EvalSample],
              options: RunOptions, max_pixels: int) -> Iterator[tuple[Sequence[EvalSample], list[str]]]:
    """Each batch of samples with its answers, as soon as they are decoded."""
    from PIL import Image

    from glmocr_lf.data.resize import lf_preprocess_image

    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"  # batched generation continues every row from its last token
    stop_ids = [tokenizer.eos_token_id] + [tokenizer.convert_tokens_to_ids(t) for t in template.STOP_TOKENS]
    stop_ids = [i for i in stop_ids if isinstance(i, int) and i != tokenizer.unk_token_id]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    for start in range(0, len(samples), options.batch_size):
        batch = samples[start:start + options.batch_size]
        images = []
        for sample in batch:
            for path in sample.images:
                with Image.open(path) as image:
                    image.load()  # the file closes here; a no-op resize returns this same image
                    images.append(lf_preprocess_image(image, max_pixels, options.image_min_pixels))
        inputs = processor(text=[build_prompt(s) for s in batch], images=images or None,
                           return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(model.device)
        with torch.inference_mode():
            output = model.generate(**inputs, do_sample=False, num_beams=1,
                                    max_new_tokens=options.max_new_tokens,
                                    repetition_penalty=options.repetition_penalty,
                                    eos_token_id=stop_ids, pad_token_id=pad_id)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        yield batch, [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def run_plan(options: RunOptions, samples: Sequence[EvalSample], max_pixels: int,
             source: str) -> list[str]:
    return [
        f"model: {options.model}" + (f" + adapter {options.adapter}" if options.adapter else ""),
        f"dataset: {options.dataset} ({len(samples)} samples)",
        f"images: at most {max_pixels} pixels (from {source})",
        f"decoding: greedy, repetition_penalty {options.repetition_penalty}, "
        f"max_new_tokens {options.max_new_tokens}, batch size {options.batch_size}",
    ]


# Options that change the answers: a resumed run must use the same ones (batch size and device do not).
RESUME_KEYS = ("model", "adapter", "dataset", "max_new_tokens", "repetition_penalty", "image_max_pixels",
               "image_min_pixels")


def _finished(path: Path, samples: Sequence[EvalSample], record: EvalRecord) -> dict[str, Prediction]:
    """The predictions an earlier run of the same evaluation wrote, by sample id."""
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    earlier = read_eval_record(path.parent)
    changed = [f"{key} {getattr(earlier, key)!r}, now {getattr(record, key)!r}" for key in RESUME_KEYS
               if earlier is not None and key in earlier.model_fields_set
               and getattr(earlier, key) != getattr(record, key)]
    if changed:
        raise GlmocrLfError(f"--resume: {eval_record_path(path.parent)} was made with other options: "
                            + "; ".join(changed),
                            hint="resume with the same options, or pass --force to start over")
    done = {p.id: p for p in read_predictions(path)}
    unknown = sorted(set(done) - {s.id for s in samples})
    if unknown:
        raise GlmocrLfError(f"--resume: {path} holds ids that are not in {record.dataset} "
                            f"(first: {unknown[0]!r})", hint="pass --force to start over")
    return done


def run_evaluation(options: RunOptions, *, on_start: Callable[[list[str]], object] | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Generate and append each batch's predictions to predictions.jsonl as they are made (an
    interrupted run keeps them; `resume` continues after the last finished sample), then write
    eval_run.json and scores.json into `out_dir`, and score."""
    check_dir_target(options.out_dir, "--out directory")
    predictions_path = options.out_dir / PREDICTIONS_FILE
    if predictions_path.exists() and not (options.force or options.resume):
        raise GlmocrLfError(f"{predictions_path}: already exists",
                            hint="pass --resume to continue it, --force to start over, or --out another directory")
    stale = stale_merge(Path(options.model)) if Path(options.model).is_dir() else None
    if stale:
        adapter, why = stale
        raise GlmocrLfError(f"{why}: its scores would describe an older model",
                            hint=f"merge it again: glmocr-lf export --adapter {adapter} --out {options.model} --force")
    samples = load_samples(resolve_dataset(options.dataset, options.data_dir), options.max_samples)
    max_pixels, source = resolve_image_max_pixels(options.model, options.adapter,
                                                  options.image_max_pixels)
    record = EvalRecord.model_validate({
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "image_max_pixels": max_pixels, "image_max_pixels_source": source, "samples": len(samples),
        "status": "running"})
    if options.force and not options.resume:
        atomic_write_text(predictions_path, "")
    # opened before the model loads: an unwritable --out fails now, and a line cut off by a crash goes
    with jsonl.Appender(predictions_path) as appender:
        done = _finished(predictions_path, samples, record) if options.resume else {}
        plan = run_plan(options, samples, max_pixels, source)
        if options.resume:
            plan.append(f"resuming: {len(done)} of {len(samples)} samples already in {predictions_path}")
        if on_start:
            on_start(plan)
        write_eval_record(options.out_dir, record)
        started = time.monotonic()
        todo = [s for s in samples if s.id not in done]
        device = "-"
        if todo:
            torch, processor, model = _load(options)
            device = str(model.device)
            for batch, answers in _generate(torch, processor, model, todo, options, max_pixels):
                for sample, answer in zip(batch, answers, strict=True):
                    prediction = Prediction(id=sample.id, task=detect_task(sample.user_text),
                                            prompt=sample.user_text, reference=sample.reference.strip(),
                                            prediction=answer)
                    appender.add(asdict(prediction))
                    done[sample.id] = prediction
                if on_progress:
                    on_progress(len(done), len(samples))
    predictions = [done[s.id] for s in samples]
    write_predictions(predictions_path, predictions)  # in dataset order, whatever order resumes took
    write_eval_record(options.out_dir, record.model_copy(update={
        "status": "finished", "seconds": round(time.monotonic() - started, 2), "device": device}))
    from glmocr_lf.evaluation.score import score_predictions

    scores = score_predictions(predictions, source=str(predictions_path))
    scores_path = options.out_dir / SCORES_FILE
    atomic_write_text(scores_path, json.dumps(scores.to_json(), indent=2, ensure_ascii=False) + "\n")
    return RunResult(predictions_path, scores_path, scores, max_pixels, source)
