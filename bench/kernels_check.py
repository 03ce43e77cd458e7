"""GPU check of glmocr_lf/kernels: each swapped op against the original, then the whole model.

    python bench/kernels_check.py ops                        # op by op, fresh random inputs
    python bench/kernels_check.py model --work W             # one batch, one piece at a time
    python bench/kernels_check.py curves --work W A:B ...    # per-step loss of run A vs run B
    python bench/kernels_check.py budget --work W RUN:GIB    # peak reserved within the budget

`ops`: forward output and input gradients of each original transformers function against the
swapped one (bf16 inputs, and an fp32 weight for RMSNorm as in full fine-tuning), as
‖out - ref‖ / ‖ref‖, both measured against a float64 evaluation of the original.
`model`: the real-dimension GLM-OCR from `gpu_train.py prepare`, LoRA on the language model as
LLaMA-Factory sets it up, 16 samples of 843 tokens (576 image tokens each): first loss, LoRA
gradients and forward+backward time (median of 8 after 3) with nothing swapped, each piece alone,
the default pieces, and the default pieces plus fused linear cross-entropy.
`curves`: reads trainer_log.jsonl of two runs (logging_steps=1) and prints the relative loss
difference per step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rel(a: Any, b: Any) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def check_ops() -> list[dict[str, Any]]:
    import torch
    from transformers.models.glm_ocr import modeling_glm_ocr as m

    from glmocr_lf.kernels import glm_ocr

    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16
    rows = []

    def compare(name: str, make: Any, run: Any, grad_inputs: int = 99,
                pieces: tuple[str, ...] = ("rms_norm_liger", "swiglu", "rope")) -> None:
        inputs = make()
        outs = {}
        for label in ("ref64", "orig", "ours"):
            glm_ocr.restore(m)
            if label == "ours":
                glm_ocr.apply(m, pieces)
            xs = [x.detach().double() if label == "ref64" else x.detach().clone() for x in inputs]
            for x in xs[:grad_inputs]:  # cos/sin are computed under no_grad in the model
                x.requires_grad_(x.is_floating_point())
            out = run(xs)
            out = out if isinstance(out, tuple) else (out,)
            torch.manual_seed(1)
            grads = [torch.randn(o.shape, device=dev).to(o.dtype) for o in out]  # same draw for every dtype
            torch.autograd.backward(out, grads)
            outs[label] = ([o.detach() for o in out], [x.grad for x in xs if x.grad is not None])
        glm_ocr.restore(m)
        ref, orig, ours = outs["ref64"], outs["orig"], outs["ours"]
        row = {"op": name,
               "fwd_orig": max(rel(o, r) for o, r in zip(orig[0], ref[0], strict=True)),
               "fwd_ours": max(rel(o, r) for o, r in zip(ours[0], ref[0], strict=True)),
               "grad_orig": max(rel(o, r) for o, r in zip(orig[1], ref[1], strict=True)),
               "grad_ours": max(rel(o, r) for o, r in zip(ours[1], ref[1], strict=True)),
               "dtype_same": all(a.dtype == b.dtype for a, b in zip(orig[0], ours[0], strict=True))}
        rows.append(row)
        print(json.dumps(row), flush=True)

    def norm(dim: int, weight_dtype: Any) -> Any:
        module = m.GlmOcrRMSNorm(dim, eps=1e-5).to(dev)
        module.weight.data = (1 + 0.1 * torch.randn(dim, device=dev)).to(weight_dtype)
        return module

    for dim, wdt, shape in ((1536, bf, (4, 700, 1536)), (1536, torch.float32, (4, 700, 1536)),
                            (64, bf, (9000, 16, 64))):
        module = norm(dim, wdt)

        def run_norm(xs: list[Any], module: Any = module) -> Any:
            w = module.weight
            saved = w.data
            if xs[0].dtype == torch.float64:
                module.weight.data = saved.double()
            try:
                return module(xs[0])
            finally:
                module.weight.data = saved
        compare(f"rms_norm {shape} w={str(wdt)[6:]}", lambda shape=shape: [torch.randn(shape, device=dev, dtype=bf)],
                run_norm)
        x_dtype = torch.float32 if wdt == torch.float32 else bf  # full fine-tuning: fp32 stream, fp32 weight
        compare(f"rms_norm (torch) {shape} x={str(x_dtype)[6:]} w={str(wdt)[6:]}",
                lambda shape=shape, x_dtype=x_dtype: [torch.randn(shape, device=dev, dtype=x_dtype)], run_norm,
                pieces=("rms_norm",))

    def text_mlp_run(xs: list[Any]) -> Any:
        up = xs[0]
        gate, up2 = up.chunk(2, dim=-1)
        if up.dtype == torch.float64:
            return up2 * torch.nn.functional.silu(gate)
        # the swapped kernel is reached through the module; call the fused function as the module does
        mlp = m.GlmOcrTextMLP.__new__(m.GlmOcrTextMLP)
        torch.nn.Module.__init__(mlp)
        mlp.config = type("C", (), {"hidden_act": "silu"})()
        mlp.gate_up_proj = torch.nn.Identity()
        mlp.down_proj = torch.nn.Identity()
        mlp.activation_fn = torch.nn.functional.silu
        return mlp(up)
    compare("text silu-mul (4, 700, 2x4608)", lambda: [torch.randn(4, 700, 9216, device=dev, dtype=bf)], text_mlp_run)

    def text_rope(xs: list[Any]) -> Any:
        q, k, cos, sin = xs
        q, k = m.apply_rotary_pos_emb(q, k, cos, sin)
        if m.apply_rotary_pos_emb.__module__ == glm_ocr.__name__:  # ours leaves heads de-interleaved
            q, k = reinterleave(q), reinterleave(k)
        return q, k

    def make_text_rope() -> list[Any]:
        b, s = 4, 700
        q = torch.randn(b, s, 16, 128, device=dev, dtype=bf).transpose(1, 2)
        k = torch.randn(b, s, 8, 128, device=dev, dtype=bf).transpose(1, 2)
        ang = torch.rand(b, s, 64, device=dev) * 100
        emb = torch.cat((ang, ang), dim=-1)
        return [q, k, emb.cos().to(bf), emb.sin().to(bf)]
    compare("text rope interleaved (4, 16/8, 700, 128)", make_text_rope, text_rope, 2)

    def vision_rope(xs: list[Any]) -> Any:
        q, k, cos, sin = xs
        return m.apply_rotary_pos_emb_vision(q, k, cos, sin)

    def make_vision_rope() -> list[Any]:
        s = 9000
        ang = torch.rand(s, 32, device=dev) * 100
        emb = torch.cat((ang, ang), dim=-1)
        return [torch.randn(s, 16, 64, device=dev, dtype=bf), torch.randn(s, 16, 64, device=dev, dtype=bf),
                emb.cos(), emb.sin()]
    compare("vision rope (9000, 16, 64)", make_vision_rope, vision_rope, 2)

    # vision attention: per-image SDPA loop (original) vs one varlen_attn call; images of different sizes
    import copy

    config = m.GlmOcrVisionConfig(hidden_size=1024, num_heads=16, depth=1, attention_bias=True)
    config._attn_implementation = "sdpa"
    attn = m.GlmOcrVisionAttention(config).to(dev, bf)
    attn64 = copy.deepcopy(attn).double()
    lengths = [2304, 1600, 3136, 900, 2304, 1024, 196, 3600]
    cu = torch.tensor([0, *lengths], device=dev).cumsum(0).to(torch.int32)

    def vision_attention(xs: list[Any]) -> Any:
        module = attn64 if xs[0].dtype == torch.float64 else attn
        return module(xs[0], torch.tensor(cu.tolist(), device=dev, dtype=torch.int32),
                      position_embeddings=(xs[1], xs[2]))

    def make_vision_attention() -> list[Any]:
        s = sum(lengths)
        ang = torch.rand(s, 32, device=dev) * 100
        emb = torch.cat((ang, ang), dim=-1)
        return [torch.randn(s, 1024, device=dev, dtype=bf), emb.cos(), emb.sin()]
    compare(f"vision attention {len(lengths)} images, {sum(lengths)} patches", make_vision_attention,
            vision_attention, 1, ("vision_attn",))
    return rows


def reinterleave(x: Any) -> Any:
    """Inverse of glm_ocr.deinterleave: evens then odds -> pairs (0,1), (2,3)..."""
    import torch

    half = x.shape[-1] // 2
    return torch.stack((x[..., :half], x[..., half:]), dim=-1).flatten(-2)


def make_batch(work: Path, samples: int, text_tokens: int) -> dict[str, Any]:
    import random

    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(work / "model")
    rng = random.Random(0)
    words = ["invoice", "total", "amount", "date", "table", "formula", "sodium", "chloride", "benzene", "yield", "sample"]
    texts, images = [], []
    for i in range(samples):
        answer = " ".join(rng.choice(words) for _ in range(text_tokens))
        texts.append(f"<|user|><|begin_of_image|><|image|><|end_of_image|>Text Recognition:<|assistant|>{answer}")
        images.append(Image.new("RGB", (672, 672), (255 - i, 255, 255)))
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    labels = batch["input_ids"].clone()
    labels[batch["input_ids"] == processor.image_token_id] = -100
    labels[batch["attention_mask"] == 0] = -100
    batch["labels"] = labels
    return {k: v.cuda() if hasattr(v, "cuda") else v for k, v in batch.items()}


def check_model(work: Path, steps: int, warmup: int) -> list[dict[str, Any]]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText
    from transformers.models.glm_ocr import modeling_glm_ocr as m

    from glmocr_lf.kernels import glm_ocr

    model = AutoModelForImageTextToText.from_pretrained(work / "model", dtype=torch.bfloat16).cuda()
    for p in model.parameters():
        p.requires_grad_(False)
    targets = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_up_proj|down_proj)"
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    for name, p in model.named_parameters():  # lora_B starts at zero: give it values so lora_A has gradients
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    model.train()
    batch = make_batch(work, 16, 250)
    print(f"batch: input_ids {tuple(batch['input_ids'].shape)}", flush=True)
    trained = [p for p in model.parameters() if p.requires_grad]

    def step() -> tuple[float, Any]:
        for p in trained:
            p.grad = None
        loss = model(**batch).loss
        loss.backward()
        return float(loss), torch.cat([p.grad.flatten().float() for p in trained])

    variants = [("as shipped", []), ("rms_norm", ["rms_norm"]), ("swiglu", ["swiglu"]), ("rope", ["rope"]),
                ("rms_norm+swiglu+rope", ["rms_norm", "swiglu", "rope"]),
                ("+ flce", ["rms_norm", "swiglu", "rope", "flce"])]
    rows, ref_loss, ref_grad = [], None, None
    for name, pieces in variants:
        glm_ocr.restore(m)
        glm_ocr.apply(m, pieces)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        try:
            loss, grad = step()
            times = []
            for i in range(warmup + steps):
                torch.cuda.synchronize()
                t = time.perf_counter()
                step()
                torch.cuda.synchronize()
                if i >= warmup:
                    times.append(time.perf_counter() - t)
        except Exception as err:  # report and go on with the next variant
            rows.append({"variant": name, "error": repr(err)[:300]})
            print(json.dumps(rows[-1]), flush=True)
            continue
        if ref_loss is None:
            ref_loss, ref_grad = loss, grad
        row = {"variant": name, "step_ms": 1000 * statistics.median(times), "first_loss": loss,
               "loss_rel_diff": abs(loss - ref_loss) / abs(ref_loss), "grad_rel_diff": rel(grad, ref_grad),
               "peak_alloc_gib": torch.cuda.max_memory_allocated() / 2**30,
               "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}
        rows.append(row)
        print(json.dumps(row), flush=True)
    glm_ocr.restore(m)
    return rows


def curves(work: Path, pairs: list[str]) -> list[dict[str, Any]]:
    out = []
    for pair in pairs:
        a, b = pair.split(":")
        logs = []
        for name in (a, b):
            path = work / "runs" / name / "trainer_log.jsonl"
            with open(path, encoding="utf-8") as fh:
                logs.append({e["current_steps"]: e["loss"] for e in map(json.loads, fh) if "loss" in e})
        steps = sorted(set(logs[0]) & set(logs[1]))
        diffs = [abs(logs[0][s] - logs[1][s]) / abs(logs[1][s]) for s in steps]
        row = {"runs": pair, "steps": len(steps),
               "first_step": steps[0] if steps else None,
               "first_loss": [logs[0][steps[0]], logs[1][steps[0]]] if steps else None,
               "first_rel_diff": diffs[0] if diffs else None,
               "max_rel_diff": max(diffs) if diffs else None,
               "max_at_step": steps[diffs.index(max(diffs))] if diffs else None,
               "last_loss": [logs[0][steps[-1]], logs[1][steps[-1]]] if steps else None}
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def budgets(work: Path, pairs: list[str]) -> list[dict[str, Any]]:
    """RUN:GIB pairs: peak reserved memory (the probe's) within the budget, and the margin left."""
    out = []
    for pair in pairs:
        name, budget = pair.split(":")
        record = json.loads((work / "results" / f"{name}.json").read_text())
        reserved, allocated = record.get("peak_reserved_gib"), record.get("peak_allocated_gib")
        ok = reserved is not None and reserved <= float(budget)
        row = {"run": name, "budget_gib": float(budget), "peak_reserved_gib": reserved,
               "peak_allocated_gib": allocated, "batch": f"{record.get('per_device_train_batch_size')}x"
               f"{record.get('gradient_accumulation_steps')}", "checkpointing": record.get("gradient_checkpointing"),
               "max_padded_len": record.get("max_padded_len"), "within_budget": ok}
        out.append(row)
        print(("PASS " if ok else "FAIL ") + json.dumps(row), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ops")
    p = sub.add_parser("model")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    c = sub.add_parser("curves")
    c.add_argument("--work", type=Path, required=True)
    c.add_argument("pairs", nargs="+", help="RUN_A:RUN_B (run names under WORK/runs)")
    b = sub.add_parser("budget")
    b.add_argument("--work", type=Path, required=True)
    b.add_argument("pairs", nargs="+", help="RUN:GIB")
    args = parser.parse_args()
    if args.cmd == "ops":
        check_ops()
    elif args.cmd == "model":
        check_model(args.work, args.steps, args.warmup)
    elif args.cmd == "curves":
        curves(args.work, args.pairs)
    else:
        budgets(args.work, args.pairs)


if __name__ == "__main__":
    main()
