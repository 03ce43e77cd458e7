"""GPU benchmark: the vendor's GLM-OCR recipes (raw `llamafactory-cli`) against `glmocr-lf train`.

Runs on a GPU machine with the training stack installed. Weights cannot be downloaded, so it builds
a randomly initialised GLM-OCR with the real model's dimensions (random weights cost the same
FLOPs), and a dataset of real images: the 10 sample images replicated plus synthetic document pages
of several sizes. Each configuration trains a fixed number of optimizer steps; a timing probe
(bench/gpu_probe/sitecustomize.py, a TrainerCallback) records every step's end time, the samples
and tokens seen, and peak GPU memory. Steady state skips the first `--warmup` steps.

    python bench/gpu_train.py prepare --work W            # model + data
    python bench/gpu_train.py run --work W --name vendor-lora --vendor lora
    python bench/gpu_train.py run --work W --name ours-lora --ours lora -- --memory-budget 8
    python bench/gpu_train.py report --work W             # table (markdown) + results.json
    python bench/gpu_train.py launch --work W vendor=RUN,RUN ours=RUN,RUN   # where the launch goes

On a CPU machine, `prepare --dims tiny` builds a tiny GLM-OCR with the real processor (the same
tokenisation as the real model; a step costs nothing), so the launch phases can be measured there;
`run --launch-only` stops the training process when its first optimizer step would begin.

MFU = model FLOPs per second / 989 TFLOP/s (H100/H200 dense bf16 datasheet). Model FLOPs per
sample: the frozen vision tower and projector forward (2 x linear params x patches, plus attention
4 x patches^2 x width per layer) and the language model's forward and backward (forward as above
with tokens; backward 2x forward for full fine-tuning, 1x for LoRA where frozen weights need no
weight gradients); recomputation under gradient checkpointing is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from launch_phases import breakdown
from launch_phases import table as phase_table

ROOT = Path(__file__).resolve().parent.parent
PROBE_DIR = Path(__file__).resolve().parent / "gpu_probe"
PEAK_TFLOPS = 989.0

REAL_TEXT = {"hidden_size": 1536, "intermediate_size": 4608, "num_hidden_layers": 16,
             "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
             "vocab_size": 59392, "max_position_embeddings": 131072}
REAL_VISION = {"hidden_size": 1024, "depth": 24, "num_heads": 16, "intermediate_size": 4096,
               "out_hidden_size": 1536, "patch_size": 14, "spatial_merge_size": 2,
               "temporal_patch_size": 2, "image_size": 336}


# -- model ---------------------------------------------------------------------------------------
def build_real_dims_model(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """A random GLM-OCR with the real dimensions (bf16) and the real processor bounds."""
    import torch
    from transformers import GlmOcrConfig, GlmOcrForConditionalGeneration

    from glmocr_lf.smoke.tiny_model import SPECIAL_TOKENS, build_tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    config = GlmOcrConfig(
        text_config={**REAL_TEXT,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                         "mrope_section": [16, 24, 24], "partial_rotary_factor": 1.0},
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config=dict(REAL_VISION),
        image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"], image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"], video_end_token_id=ids["<|end_of_video|>"],
    )
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = GlmOcrForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out_dir)

    save_real_processor(out_dir, tokenizer)
    return write_meta(out_dir, model, "real")


def write_meta(out_dir: Path, model: Any, dims: str) -> dict[str, Any]:
    """bench_meta.json: the parameter counts the MFU figure uses, and the image token id."""
    import torch

    def linear_params(prefix: str) -> int:
        return sum(m.weight.numel() for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and n.startswith(prefix))

    text, vision = model.config.text_config, model.config.vision_config
    meta = {
        "dims": dims,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vision_linear": linear_params("model.visual.blocks"),
        "merger_linear": linear_params("model.visual.merger"),
        "text_linear": linear_params("model.language_model"),
        "lm_head": model.lm_head.weight.numel(),
        "vision_layers": vision.depth, "vision_width": vision.hidden_size,
        "text_layers": text.num_hidden_layers,
        "text_attn_width": text.num_attention_heads * text.head_dim,
        "image_token_id": model.config.image_token_id,
    }
    (out_dir / "bench_meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def build_tiny_model(out_dir: Path) -> dict[str, Any]:
    """glmocr-lf's tiny GLM-OCR (CPU smoke tests) with the real processor bounds: LLaMA-Factory
    resizes and tokenises every image as for the real model, and a step costs next to nothing."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    build_tiny_glm_ocr(out_dir)
    save_real_processor(out_dir, AutoTokenizer.from_pretrained(out_dir))
    return write_meta(out_dir, AutoModelForImageTextToText.from_pretrained(out_dir), "tiny")


def save_real_processor(out_dir: Path, tokenizer: Any) -> None:
    """GLM-OCR's processor with the real model's pixel bounds."""
    from transformers import Glm46VImageProcessor, Glm46VProcessor, Glm46VVideoProcessor

    from glmocr_lf.data.resize import PROCESSOR_MAX_PIXELS, PROCESSOR_MIN_PIXELS
    from glmocr_lf.smoke.tiny_model import CHAT_TEMPLATE

    size = {"shortest_edge": PROCESSOR_MIN_PIXELS, "longest_edge": PROCESSOR_MAX_PIXELS}
    patches = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}
    Glm46VProcessor(
        image_processor=Glm46VImageProcessor(size=size, **patches), tokenizer=tokenizer,
        video_processor=Glm46VVideoProcessor(size=size, **patches), chat_template=CHAT_TEMPLATE,
    ).save_pretrained(out_dir)


# -- data ----------------------------------------------------------------------------------------
_WORDS = ("invoice", "total", "amount", "date", "reference", "table", "formula", "sodium", "chloride",
          "benzene", "ring", "yield", "temperature", "pressure", "sample", "result", "method",
          "analysis", "figure", "column", "row", "value", "page")


def synthetic_page(path: Path, width: int, height: int, rng: random.Random) -> str:
    """A white page with lines of dark text; returns the text drawn (the OCR target)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    lines, y, step = [], 20, max(14, height // 60)
    while y < height - step and len(lines) < 40:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 9)))
        draw.text((20, y), line, fill=(rng.randint(0, 60),) * 3)
        lines.append(line)
        y += step
    image.save(path)
    return "\n".join(lines[: rng.randint(3, 12)])


def _page(job: tuple[Path, int, int, int]) -> str:
    path, width, height, seed = job
    return synthetic_page(path, width, height, random.Random(seed))


def build_dataset(data_dir: Path, samples: int, pages: int, seed: int = 0) -> dict[str, Any]:
    """`cosyn_chemical` = the sample data replicated + synthetic pages, registered in dataset_info.json.

    `pages == samples`: no replicated sample, every one a distinct synthetic page (its own text,
    drawn from its own seed). Pages are drawn in parallel; each page's content depends only on its
    index and `seed`.
    """
    from concurrent.futures import ProcessPoolExecutor

    rng = random.Random(seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    sample_images = data_dir / "cosyn_chemical"
    if sample_images.exists():
        shutil.rmtree(sample_images)
    shutil.copytree(ROOT / "examples" / "cosyn_chemical", sample_images)
    base = json.loads((ROOT / "examples" / "cosyn_chemical.json").read_text())
    page_dir = data_dir / "pages"
    page_dir.mkdir(exist_ok=True)
    # page sizes from ~0.4 to ~8 megapixels: 500 to 4,000+ image tokens before any pixel cap
    sizes = [(620, 800), (900, 1200), (1240, 1754), (1654, 2339), (2480, 3508)]
    jobs = [(page_dir / f"page_{i:03d}.png", *sizes[i % len(sizes)], seed * 1_000_003 + i) for i in range(pages)]
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        texts = list(pool.map(_page, jobs, chunksize=8))
    page_records = [{"messages": [{"role": "user", "content": "<image>Text Recognition:"},
                                  {"role": "assistant", "content": text}],
                     "images": [f"pages/{job[0].name}"]} for job, text in zip(jobs, texts, strict=True)]
    records = [base[i % len(base)] for i in range(samples - pages)] + page_records
    rng.shuffle(records)
    (data_dir / "cosyn_chemical.json").write_text(json.dumps(records, ensure_ascii=False))
    (data_dir / "dataset_info.json").write_text(json.dumps({
        "cosyn_chemical": {"file_name": "cosyn_chemical.json", "formatting": "sharegpt",
                           "columns": {"messages": "messages", "images": "images"},
                           "tags": {"role_tag": "role", "content_tag": "content",
                                    "user_tag": "user", "assistant_tag": "assistant"}}}, indent=1))
    distinct = len({json.dumps(r, sort_keys=True) for r in records})
    return {"data": data_dir.name, "samples": len(records), "pages": pages, "distinct_samples": distinct}


# -- runs ----------------------------------------------------------------------------------------
# Quality runs (`--epochs`): every run holds out the same 10% (LLaMA-Factory splits with the seed,
# which both recipes leave at 42) and evaluates it after each epoch; no checkpoint is written (the
# full recipe's last-step checkpoint is ~9 GB of optimizer state, after the last evaluation).
EVAL_OVERRIDES = ["max_steps=-1", "val_size=0.1", "eval_strategy=epoch", "per_device_eval_batch_size=8",
                  "save_strategy='no'"]


def harness_overrides(work: Path, name: str, steps: int, data: str = "data", epochs: int | None = None) -> list[str]:
    """What every run gets on its command line: where things are, how long it trains, and (quality
    runs) the held-out split and when to evaluate it. No speed knob."""
    where = [f"model_name_or_path={work / 'model'}", f"dataset_dir={work / data}",
             f"output_dir={work / 'runs' / name}"]
    if epochs is None:
        return [*where, f"max_steps={steps}"]
    return [*where, *EVAL_OVERRIDES, f"num_train_epochs={epochs}"]


def probe_env(work: Path, name: str, meta: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROBE_DIR), str(ROOT), env.get("PYTHONPATH", "")])
    env["GLMOCR_BENCH_PROBE"] = str(work / "probe" / f"{name}.json")
    env["GLMOCR_BENCH_IMAGE_TOKEN_ID"] = str(meta["image_token_id"])
    env["GLMOCR_BENCH_T0"] = repr(time.time())
    # cold: no datasets cache shared between runs
    env["HF_DATASETS_CACHE"] = str(work / "hfcache" / name)
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    env.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    env.setdefault("NVSHMEM_DISABLE_NVLS", "1")
    return env


def vendor_command(method: str) -> list[str]:
    beside = Path(sys.executable).parent / "llamafactory-cli"
    exe = str(beside) if beside.exists() else shutil.which("llamafactory-cli") or "llamafactory-cli"
    return [exe, "train", str(ROOT / "examples" / "vendor" / f"glm_ocr_{method}_sft.yaml")]


def ours_config(work: Path, method: str) -> Path:
    """Our preset for `method` (the vendor values plus documented differences), as a config file."""
    from glmocr_lf.config.presets import preset
    from glmocr_lf.config.render import render_config

    path = work / "configs" / f"ours_{method}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text, _ = render_config(preset(method))  # type: ignore[arg-type]
    path.write_text(text)
    return path


def ours_command(work: Path, method: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "glmocr_lf", "train", str(ours_config(work, method)), *extra]


def run_one(work: Path, name: str, argv: list[str], env_extra: dict[str, str], timeout: int,
            logs: Path) -> dict[str, Any]:
    meta = json.loads((work / "model" / "bench_meta.json").read_text())
    (work / "probe").mkdir(exist_ok=True)
    probe = work / "probe" / f"{name}.json"
    probe.unlink(missing_ok=True)
    phases_path(probe).unlink(missing_ok=True)
    env = probe_env(work, name, meta)
    env.update(env_extra)
    logs.mkdir(parents=True, exist_ok=True)
    print(f"[bench] {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    start = time.time()
    with open(logs / f"{name}.log", "w") as log:
        try:
            rc = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                cwd=str(work), check=False).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    wall = time.time() - start
    record: dict[str, Any] = {"name": name, "argv": argv, "rc": rc, "wall_s": wall}
    if probe.exists():
        record.update(json.loads(probe.read_text()))
    record["phases"] = read_phases(probe)
    record["launch"] = breakdown(record["phases"], float(env["GLMOCR_BENCH_T0"]))
    (work / "results").mkdir(exist_ok=True)
    (work / "results" / f"{name}.json").write_text(json.dumps(record))
    print(f"[bench] {name}: rc={rc} wall={wall:.0f}s", file=sys.stderr, flush=True)
    return record


def phases_path(probe: Path) -> Path:
    return probe.with_name(probe.name + ".phases.jsonl")


def read_phases(probe: Path) -> list[dict[str, Any]]:
    """The launch-phase events every process of the run appended (bench/gpu_probe/_glmocr_bench_phases.py)."""
    path = phases_path(probe)
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def launch_table(work: Path, groups: list[str]) -> str:
    """`LABEL=RUN[,RUN...]` (or a bare RUN): one column per label, median (min–max) over its runs."""
    columns: dict[str, list[dict[str, float | None]]] = {}
    for group in groups:
        label, _, runs = group.rpartition("=")
        for name in runs.split(","):
            record = json.loads((work / "results" / f"{name}.json").read_text())
            columns.setdefault(label or name, []).append(record.get("launch") or {})
    return phase_table(columns)


# -- figures -------------------------------------------------------------------------------------
def summarize(record: dict[str, Any], meta: dict[str, Any], warmup: int, method: str) -> dict[str, Any]:
    steps = record.get("step_end_times") or []
    out: dict[str, Any] = {"name": record["name"], "rc": record.get("rc"), "steps": len(steps)}
    if len(steps) <= warmup + 1:
        return out
    world = record.get("world_size", 1)
    per_step = record["per_device_train_batch_size"] * record["gradient_accumulation_steps"] * world
    # steady state: the steps after `warmup` in which torch.compile traced no new graph (a compile
    # is paid once per graph; a run without compile has none, and every step after warm-up counts)
    begin = record.get("first_step_begin") or steps[0]
    durations = [end - start for start, end in zip([begin, *steps[:-1]], steps, strict=True)]
    graphs = record.get("graphs_after_step") or [0] * len(steps)
    compiled = [i for i, n in enumerate(graphs) if n > (graphs[i - 1] if i else 0)]
    timed_idx = [i for i in range(warmup, len(steps)) if i not in compiled]
    timed = len(timed_idx)
    seconds = sum(durations[i] for i in timed_idx)
    samples_s = per_step * timed / seconds
    all_steps = per_step * (len(steps) - warmup) / (steps[-1] - steps[warmup - 1])
    samples = max(record.get("rank0_samples", 0), 1)
    tokens = record.get("rank0_tokens", 0) / samples
    image_tokens = record.get("rank0_image_tokens", 0) / samples
    tokens_sq = record.get("rank0_tokens_sq", 0.0) / samples
    image_sq = record.get("rank0_image_tokens_sq", 0.0) / samples
    patches, patches_sq = 4 * image_tokens, 16 * image_sq
    vision = (2 * meta["vision_linear"] * patches
              + 4 * meta["vision_layers"] * meta["vision_width"] * patches_sq
              + 2 * meta["merger_linear"] * image_tokens)
    text_fwd = (2 * (meta["text_linear"] + meta["lm_head"]) * tokens
                + 2 * meta["text_layers"] * meta["text_attn_width"] * tokens_sq)  # causal: half of 4
    train_mult = 3.0 if method == "full" else 2.0
    flops = vision + train_mult * text_fwd
    out.update({
        "gpus": world, "batch": f"{record['per_device_train_batch_size']}x{record['gradient_accumulation_steps']}"
        + (f"x{world}" if world > 1 else ""),
        "samples_s": samples_s, "tokens_s": samples_s * tokens, "tokens_per_sample": tokens,
        "image_tokens_per_sample": image_tokens,
        "padding": 1 - record.get("rank0_tokens", 0) / max(record.get("rank0_padded_tokens", 1), 1),
        "alloc_gib": record.get("peak_allocated_gib"), "reserved_gib": record.get("peak_reserved_gib"),
        "mfu": flops * samples_s / world / (PEAK_TFLOPS * 1e12),
        "launch_to_first_step_s": (record["first_step_begin"] - record["process_start"])
        if record.get("first_step_begin") and record.get("process_start") else None,
        "wall_s": record.get("wall_s"), "gpu": record.get("gpu"), "timed_steps": timed,
        "samples_s_all_steps": all_steps, "graphs": graphs[-1] if graphs else 0,
        "compile_steps": {i + 1: round(durations[i], 1) for i in compiled},
    })
    return out


def _compiles(row: dict[str, Any]) -> str:
    """Steps that compiled (left out of samples/s) and the rate with them counted, if any."""
    if not row["compile_steps"]:
        return ""
    steps = ", ".join(f"{k}: {v}" for k, v in row["compile_steps"].items())
    return f"{steps} (all steps: {row['samples_s_all_steps']:.1f}/s)"


def report(work: Path, warmup: int) -> str:
    meta = json.loads((work / "model" / "bench_meta.json").read_text())
    rows = []
    for path in sorted((work / "results").glob("*.json"), key=lambda p: p.stat().st_mtime):
        record = json.loads(path.read_text())
        method = "full" if "full" in record["name"] else "lora"
        rows.append(summarize(record, meta, warmup, method))
    (work / "summary.json").write_text(json.dumps(rows, indent=1))
    head = ("| run | GPUs | batch | samples/s | tokens/s | peak alloc / reserved GiB | MFU | "
            "launch→1st step s | padding | compiling steps (s) | rc |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "samples_s" not in r:
            lines.append(f"| {r['name']} | | | | | | | | | | {r['rc']} ({r['steps']} steps) |")
            continue
        launch = f"{r['launch_to_first_step_s']:.1f}" if r["launch_to_first_step_s"] else ""
        lines.append(f"| {r['name']} | {r['gpus']} | {r['batch']} | {r['samples_s']:.1f} | "
                     f"{r['tokens_s'] / 1000:.1f}k | {r['alloc_gib']:.1f} / {r['reserved_gib']:.1f} | "
                     f"{100 * r['mfu']:.1f}% | {launch} | {100 * r['padding']:.0f}% | {_compiles(r)} | {r['rc']} |")
    return "\n".join(lines)


# -- quality: eval loss and time together ------------------------------------------------------
QUALITY_TOLERANCE = 1.01  # issue 20: eval loss at equal epochs within 1% of the vendor recipe's


def epochs_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per evaluation (one per epoch): eval loss, seconds from launch at its end, training
    samples/s over that epoch (evaluation time left out), samples trained in it."""
    t0 = record.get("process_start")
    steps = record.get("step_end_times") or []
    seen = record.get("samples_after_step") or []
    world = record.get("world_size", 1)
    out: list[dict[str, Any]] = []
    begin, before = record.get("first_step_begin"), 0
    for ev in record.get("evals") or []:
        done = [i for i, t in enumerate(steps) if t <= ev["start"]]
        if not done or t0 is None or begin is None:
            continue
        last = done[-1]
        samples = (seen[last] - before) * world if seen else None
        seconds = steps[last] - begin
        out.append({"epoch": round(ev["epoch"] or 0, 2), "step": ev["step"], "eval_loss": ev["eval_loss"],
                    "from_launch_s": ev["end"] - t0, "train_s": seconds, "samples": samples,
                    "samples_s": samples / seconds if samples and seconds > 0 else None,
                    "eval_s": ev["end"] - ev["start"]})
        begin, before = ev["end"], seen[last] if seen else 0
    return out


def time_to(epochs: list[dict[str, Any]], target: float) -> float | None:
    """Seconds from launch to the end of the first evaluation at or below `target`."""
    return next((e["from_launch_s"] for e in epochs if e["eval_loss"] is not None and e["eval_loss"] <= target), None)


def quality(work: Path, groups: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """`VENDOR:RUN[:RUN...]` groups: each run against the vendor run's final eval loss."""
    rows: list[dict[str, Any]] = []
    lines = ["| run | batch | eval loss per epoch | vs vendor's final | from launch per epoch (s) | "
             "samples/s per epoch | launch→1st step s | padding | peak reserved GiB | time to vendor's final "
             "loss (s) | speed-up | quality (≤ x1.01) |", "|" + "---|" * 12]
    for group in groups:
        vendor_name, *names = group.split(":")
        records = {n: json.loads((work / "results" / f"{n}.json").read_text()) for n in [vendor_name, *names]}
        vendor_epochs = epochs_of(records[vendor_name])
        if not vendor_epochs:
            lines.append(f"| {vendor_name} | no evaluation recorded (rc {records[vendor_name].get('rc')}) |")
            continue
        target = vendor_epochs[-1]["eval_loss"]
        vendor_time = time_to(vendor_epochs, target)
        for name in [vendor_name, *names]:
            record = records[name]
            epochs = epochs_of(record)
            final = epochs[-1]["eval_loss"] if epochs else None
            reached = time_to(epochs, target)
            launch = (record["first_step_begin"] - record["process_start"]) \
                if record.get("first_step_begin") and record.get("process_start") else None
            row = {"name": name, "vendor": vendor_name, "rc": record.get("rc"), "target_eval_loss": target,
                   "epochs": epochs, "final_eval_loss": final,
                   "loss_ratio": final / target if final is not None else None,
                   "quality_ok": final is not None and final <= target * QUALITY_TOLERANCE,
                   "time_to_target_s": reached,
                   "speedup": vendor_time / reached if reached and vendor_time else None,
                   "launch_to_first_step_s": launch,
                   "batch": f"{record.get('per_device_train_batch_size')}x{record.get('gradient_accumulation_steps')}",
                   "padding": 1 - record.get("rank0_tokens", 0) / max(record.get("rank0_padded_tokens", 1), 1),
                   "reserved_gib": record.get("peak_reserved_gib")}
            rows.append(row)

            def each(key: str, fmt: str, eps: list[dict[str, Any]] = epochs) -> str:
                return " / ".join(format(e[key], fmt) if e[key] is not None else "—" for e in eps) or "—"

            lines.append(
                f"| {name} | {row['batch']} | {each('eval_loss', '.4f')} | "
                + (f"x{row['loss_ratio']:.4f}" if row["loss_ratio"] is not None else "—")
                + f" | {each('from_launch_s', '.0f')} | {each('samples_s', '.1f')} | "
                + (f"{launch:.1f}" if launch else "—")
                + f" | {100 * row['padding']:.0f}% | "
                + (f"{row['reserved_gib']:.1f}" if row["reserved_gib"] is not None else "—")
                + " | " + (f"{reached:.0f}" if reached else f"not reached ({len(epochs)} epochs)")
                + " | " + (f"x{row['speedup']:.2f}" if row["speedup"] else "—")
                + " | " + ("yes" if row["quality_ok"] else "**no**") + f" (rc {row['rc']}) |")
    launches = {n: [json.loads((work / "results" / f"{n}.json").read_text()).get("launch") or {}]
                for group in groups for n in group.split(":")}
    return "\n".join(lines) + "\n\nWhere each launch went (s from the spawn):\n\n" + phase_table(launches), rows


def verify_checkpoint(work: Path, adapter_dir: Path) -> dict[str, Any]:
    """Load the base model plus a saved LoRA adapter and run one forward pass."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(work / "model", dtype=torch.bfloat16).cuda()
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    ids = torch.tensor([[1, 2, 3, 4, 5]], device="cuda")
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    return {"adapter": str(adapter_dir), "logits_shape": list(logits.shape),
            "finite": bool(torch.isfinite(logits).all())}


def run_parallel(work: Path, name: str, argvs: list[list[str]], env_extra: list[dict[str, str]],
                 timeout: int, logs: Path) -> dict[str, Any]:
    """Several launcher processes at once (e.g. two torchrun "nodes"); the probe reads global rank 0."""
    meta = json.loads((work / "model" / "bench_meta.json").read_text())
    (work / "probe").mkdir(exist_ok=True)
    probe = work / "probe" / f"{name}.json"
    probe.unlink(missing_ok=True)
    phases_path(probe).unlink(missing_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    env = probe_env(work, name, meta)
    start = time.time()
    procs = []
    for i, (argv, extra) in enumerate(zip(argvs, env_extra, strict=True)):
        print(f"[bench] {name}[{i}]: {' '.join(argv)}", file=sys.stderr, flush=True)
        log = open(logs / f"{name}-{i}.log", "w")  # noqa: SIM115
        procs.append(subprocess.Popen(argv, env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT,
                                      cwd=str(work)))
    rcs = []
    for proc in procs:
        try:
            rcs.append(proc.wait(timeout=max(1, timeout - (time.time() - start))))
        except subprocess.TimeoutExpired:
            proc.kill()
            rcs.append(124)
    record: dict[str, Any] = {"name": name, "argv": argvs, "rc": max(rcs), "rcs": rcs,
                              "wall_s": time.time() - start}
    if probe.exists():
        record.update(json.loads(probe.read_text()))
    record["phases"] = read_phases(probe)
    record["launch"] = breakdown(record["phases"], float(env["GLMOCR_BENCH_T0"]))
    (work / "results").mkdir(exist_ok=True)
    (work / "results" / f"{name}.json").write_text(json.dumps(record))
    print(f"[bench] {name}: rcs={rcs} wall={record['wall_s']:.0f}s", file=sys.stderr, flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--pages", type=int, default=100)
    p.add_argument("--data", default="data", help="data folder under --work (the model is shared)")
    p.add_argument("--dims", choices=("real", "tiny"), default="real",
                   help="real: GLM-OCR's dimensions; tiny: the CPU smoke model with the real processor")
    r = sub.add_parser("run")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--name", required=True)
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--vendor", choices=("lora", "full"))
    which.add_argument("--ours", choices=("lora", "full"))
    r.add_argument("--steps", type=int, default=60)
    r.add_argument("--epochs", type=int, default=None,
                   help="a quality run: this many epochs, 10%% held out, evaluated after each (not --steps)")
    r.add_argument("--data", default="data", help="data folder under --work (from prepare --data)")
    r.add_argument("--timeout", type=int, default=400)
    r.add_argument("--logs", type=Path, default=None)
    r.add_argument("--env", action="append", default=[], help="KEY=VALUE for this run's environment")
    r.add_argument("--launch-only", action="store_true",
                   help="stop the training process when its first optimizer step would begin")
    r.add_argument("extra", nargs="*", help="after --: more KEY=VALUE overrides / glmocr-lf train options")
    n = sub.add_parser("nodes", help="two single-GPU torchrun nodes on this host through glmocr-lf train")
    n.add_argument("--work", type=Path, required=True)
    n.add_argument("--name", default="ours-lora-2nodes")
    n.add_argument("--steps", type=int, default=30)
    n.add_argument("--port", type=int, default=29531)
    n.add_argument("--timeout", type=int, default=300)
    n.add_argument("--logs", type=Path, default=None)
    v = sub.add_parser("verify", help="load base + LoRA adapter from a run's output_dir, one forward")
    v.add_argument("--work", type=Path, required=True)
    v.add_argument("--adapter", type=Path, required=True)
    q = sub.add_parser("quality", help="eval loss and time to the vendor's final eval loss, per group")
    q.add_argument("--work", type=Path, required=True)
    q.add_argument("groups", nargs="+", help="VENDOR_RUN:RUN[:RUN...]")
    la = sub.add_parser("launch", help="where each run's launch went, phase by phase")
    la.add_argument("--work", type=Path, required=True)
    la.add_argument("groups", nargs="+", help="LABEL=RUN[,RUN...]: median (min–max) over the runs")
    s = sub.add_parser("report")
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    if args.cmd == "prepare":
        t = time.time()
        meta_path = args.work / "model" / "bench_meta.json"
        build = build_tiny_model if args.dims == "tiny" else build_real_dims_model
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else build(args.work / "model")
        data = build_dataset(args.work / args.data, args.samples, args.pages)
        print(json.dumps({**meta, **data, "seconds": round(time.time() - t, 1)}))
    elif args.cmd == "run":
        overrides = harness_overrides(args.work, args.name, args.steps, args.data, args.epochs)
        if args.vendor:
            argv = vendor_command(args.vendor) + overrides + list(args.extra)
        else:
            argv = ours_command(args.work, args.ours, [*overrides, "--fresh", *args.extra])
        env = dict(item.split("=", 1) for item in args.env)
        if args.launch_only:
            env["GLMOCR_BENCH_STOP_AT_FIRST_STEP"] = "1"
        run_one(args.work, args.name, argv, env, args.timeout, args.logs or args.work / "logs")
    elif args.cmd == "nodes":
        argvs, envs = [], []
        for rank in (0, 1):
            overrides = harness_overrides(args.work, f"{args.name}-node{rank}", args.steps)
            argvs.append(ours_command(args.work, "lora", [
                *overrides, "--fresh", "--gpus", str(rank), "--nproc", "1", "--nnodes", "2",
                "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(args.port)]))
            envs.append({"GLMOCR_LF_CACHE_DIR": str(args.work / "cache" / f"node{rank}")})
        run_parallel(args.work, args.name, argvs, envs, args.timeout, args.logs or args.work / "logs")
    elif args.cmd == "verify":
        print(json.dumps(verify_checkpoint(args.work, args.adapter)))
    elif args.cmd == "launch":
        print(launch_table(args.work, args.groups))
    elif args.cmd == "quality":
        table, rows = quality(args.work, args.groups)
        with open(args.work / "quality.jsonl", "a") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in rows)
        print(table)
    else:
        print(report(args.work, args.warmup))


if __name__ == "__main__":
    main()
