"""Swap parts of GLM-OCR for fused kernels (torch's and liger-kernel's), in this process only.

`apply(module, pieces)` replaces methods and module-level functions of transformers'
`modeling_glm_ocr` (never its files, never the parameters: checkpoints load and save unchanged).
`missing_targets(module)` names what a transformers upgrade renamed; the CPU tests call it so a
rename fails CI instead of silently losing the speed-up.

Numerics follow the originals: RMSNorm by torch's fused `rms_norm` (fp32 accumulation; an input
whose dtype differs from the weight's keeps the original) or, as `rms_norm_liger`, liger's "llama"
casting mode (fp32 inverse RMS, the normalised row cast back to the input dtype before the weight);
the vision attention as one FlashAttention call over the packed images (torch's varlen_attn, same
scale, no dropout); the vision rotary positions from Python ints (identical); the vision rotary embedding in
fp32 as transformers does it; the text rotary embedding is GLM's interleaved variant, which liger
does not have: q and k are de-interleaved (one copy) and rotated with liger's half-split kernel.
Attention only sees q·k, which the same permutation of q's and k's head dimensions leaves unchanged,
so they are never re-interleaved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

MODULE = "transformers.models.glm_ocr.modeling_glm_ocr"

# (attribute path in modeling_glm_ocr, what our replacement relies on) for each piece
TARGETS: dict[str, tuple[str, ...]] = {
    "rms_norm": ("GlmOcrRMSNorm.forward", "GlmOcrRMSNorm.__init__"),
    "rms_norm_liger": ("GlmOcrRMSNorm.forward", "GlmOcrRMSNorm.__init__"),
    "swiglu": ("GlmOcrTextMLP.forward", "GlmOcrVisionMlp.forward"),
    "rope": ("apply_rotary_pos_emb", "apply_rotary_pos_emb_vision", "GlmOcrTextAttention.forward",
             "GlmOcrVisionAttention.forward"),
    "flce": ("GlmOcrForConditionalGeneration.forward", "GlmOcrCausalLMOutputWithPast"),
    "vision_attn": ("GlmOcrVisionAttention.forward", "apply_rotary_pos_emb_vision", "is_flash_attention_requested"),
    "vision_positions": ("GlmOcrVisionModel.rot_pos_emb",),
    "compile": ("GlmOcrTextDecoderLayer.forward",),
}
SILU = ("silu", "swish")
_ORIGINALS = "_glmocr_lf_originals"


def _lookup(module: ModuleType, path: str) -> Any:
    obj: Any = module
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def missing_targets(module: ModuleType, pieces: Iterable[str] = TARGETS) -> list[str]:
    missing = []
    for piece in pieces:
        for path in TARGETS[piece]:
            try:
                _lookup(module, path)
            except AttributeError:
                missing.append(path)
    return missing


def apply(module: ModuleType, pieces: Iterable[str]) -> list[str]:
    """Patch `module` (modeling_glm_ocr) for `pieces`; returns what was swapped. Idempotent."""
    pieces = list(pieces)
    missing = missing_targets(module, pieces)
    if missing:
        raise RuntimeError(f"{MODULE} has no {', '.join(missing)}: this transformers is not the one "
                           "glmocr-lf's kernels were written for; run with --kernels none")
    originals: dict[str, Any] = module.__dict__.setdefault(_ORIGINALS, {})
    done = []
    for piece in pieces:
        if piece in originals:
            continue
        originals[piece] = _PATCHES[piece](module)
        done.append(piece)
    return done


def _compiling() -> Callable[[], bool]:
    """torch.compiler.is_compiling, bound once per patch (no lookup per call in a CPU-bound step).

    Inside a `compile` region liger's Triton calls step aside: inductor fuses the originals itself.
    """
    import torch

    is_compiling: Callable[[], bool] = torch.compiler.is_compiling
    return is_compiling


def _patch_rms_norm_liger(m: ModuleType) -> dict[str, Any]:
    from liger_kernel.ops.rms_norm import LigerRMSNormFunction

    original = m.GlmOcrRMSNorm.forward
    compiling = _compiling()

    def forward(self: Any, hidden_states: Any) -> Any:
        if compiling():
            return original(self, hidden_states)
        return LigerRMSNormFunction.apply(hidden_states, self.weight, self.variance_epsilon, 0.0, "llama",
                                          False, None)

    m.GlmOcrRMSNorm.forward = forward
    return {"GlmOcrRMSNorm.forward": original}


def _patch_rms_norm(m: ModuleType) -> dict[str, Any]:
    """torch's own fused RMSNorm (one ATen op: far less launch overhead on the CPU than a Triton call)."""
    import torch

    original = m.GlmOcrRMSNorm.forward
    rms_norm = torch.nn.functional.rms_norm

    def forward(self: Any, hidden_states: Any) -> Any:
        weight = self.weight
        if hidden_states.dtype != weight.dtype:  # the original promotes; keep its exact dtype rules
            return original(self, hidden_states)
        return rms_norm(hidden_states, (weight.shape[0],), weight, self.variance_epsilon)

    m.GlmOcrRMSNorm.forward = forward
    return {"GlmOcrRMSNorm.forward": original}


def _patch_swiglu(m: ModuleType) -> dict[str, Any]:
    from liger_kernel.ops.swiglu import LigerFusedGateUpSiLUMulFunction, LigerSiLUMulFunction

    text, vision = m.GlmOcrTextMLP.forward, m.GlmOcrVisionMlp.forward
    compiling = _compiling()

    def text_forward(self: Any, hidden_states: Any) -> Any:
        if self.config.hidden_act not in SILU or compiling():
            return text(self, hidden_states)
        # gate_up_proj holds [gate | up]; the original computes up * silu(gate). 2-D in and out:
        # liger's backward returns the gradient flattened to rows
        gate_up = self.gate_up_proj(hidden_states)
        fused = LigerFusedGateUpSiLUMulFunction.apply(gate_up.reshape(-1, gate_up.shape[-1]), False)
        return self.down_proj(fused.view(*gate_up.shape[:-1], fused.shape[-1]))

    def vision_forward(self: Any, hidden_state: Any) -> Any:
        if getattr(self.act_fn, "__class__", type(None)).__name__ not in ("SiLUActivation", "SiLU"):
            return vision(self, hidden_state)
        return self.down_proj(LigerSiLUMulFunction.apply(self.gate_proj(hidden_state), self.up_proj(hidden_state)))

    m.GlmOcrTextMLP.forward = text_forward
    m.GlmOcrVisionMlp.forward = vision_forward
    return {"GlmOcrTextMLP.forward": text, "GlmOcrVisionMlp.forward": vision}


def deinterleave(x: Any) -> Any:
    """(b, h, s, d) with pairs (0,1), (2,3)... -> same shape, evens then odds; memory laid out (b, s, h, d)."""
    b, h, s, d = x.shape
    y = x.transpose(1, 2).reshape(b, s, h, d // 2, 2).transpose(-1, -2).reshape(b, s, h, d)
    return y.transpose(1, 2)


def _patch_rope(m: ModuleType) -> dict[str, Any]:
    from liger_kernel.ops.rope import LigerRopeFunction

    text, vision = m.apply_rotary_pos_emb, m.apply_rotary_pos_emb_vision
    compiling = _compiling()

    def text_rope(q: Any, k: Any, cos: Any, sin: Any, unsqueeze_dim: int = 1) -> Any:
        # partial rotary (cos narrower than a head) keeps the original path
        if unsqueeze_dim != 1 or cos.shape[-1] != q.shape[-1] or q.shape[-1] % 2 or compiling():
            return text(q, k, cos, sin, unsqueeze_dim)
        q, k = deinterleave(q), deinterleave(k)
        return LigerRopeFunction.apply(q, k, cos, sin)

    def vision_rope(q: Any, k: Any, cos: Any, sin: Any) -> Any:
        # (s, h, d) -> (1, h, s, d); fp32 cos/sin make the kernel compute in fp32, as the original does
        q4, k4 = q.unsqueeze(0).transpose(1, 2), k.unsqueeze(0).transpose(1, 2)
        q4, k4 = LigerRopeFunction.apply(q4, k4, cos.float(), sin.float())
        return q4.transpose(1, 2).squeeze(0), k4.transpose(1, 2).squeeze(0)

    setattr(m, "apply_rotary_pos_emb", text_rope)  # noqa: B010 (a module attribute mypy cannot see)
    setattr(m, "apply_rotary_pos_emb_vision", vision_rope)  # noqa: B010
    return {"apply_rotary_pos_emb": text, "apply_rotary_pos_emb_vision": vision}


def _patch_flce(m: ModuleType) -> dict[str, Any]:
    from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction

    original = m.GlmOcrForConditionalGeneration.forward
    output_cls = m.GlmOcrCausalLMOutputWithPast

    def forward(self: Any, input_ids: Any = None, attention_mask: Any = None, position_ids: Any = None,
                past_key_values: Any = None, inputs_embeds: Any = None, labels: Any = None,
                pixel_values: Any = None, pixel_values_videos: Any = None, image_grid_thw: Any = None,
                video_grid_thw: Any = None, mm_token_type_ids: Any = None, logits_to_keep: Any = 0,
                **kwargs: Any) -> Any:
        if not (self.training and labels is not None and logits_to_keep == 0):
            return original(self, input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids, past_key_values=past_key_values,
                            inputs_embeds=inputs_embeds, labels=labels, pixel_values=pixel_values,
                            pixel_values_videos=pixel_values_videos, image_grid_thw=image_grid_thw,
                            video_grid_thw=video_grid_thw, mm_token_type_ids=mm_token_type_ids,
                            logits_to_keep=logits_to_keep, **kwargs)
        outputs = self.model(input_ids=input_ids, pixel_values=pixel_values,
                             pixel_values_videos=pixel_values_videos, image_grid_thw=image_grid_thw,
                             video_grid_thw=video_grid_thw, mm_token_type_ids=mm_token_type_ids,
                             position_ids=position_ids, attention_mask=attention_mask,
                             past_key_values=past_key_values, inputs_embeds=inputs_embeds, **kwargs)
        hidden = outputs[0]
        # as transformers' ForCausalLMLoss: predict token t+1 from t, mean over labelled tokens
        shifted = labels[:, 1:].reshape(-1)
        flat = hidden[:, :-1, :].reshape(-1, hidden.shape[-1])
        weight = self.lm_head.weight
        result = LigerFusedLinearCrossEntropyFunction.apply(flat, weight, shifted, None, None, -100, 0.0,
                                                            0.0, "mean")
        loss = result[0] if isinstance(result, tuple) else result
        return output_cls(loss=loss, logits=None, past_key_values=outputs.past_key_values,
                          hidden_states=outputs.hidden_states, attentions=outputs.attentions,
                          rope_deltas=outputs.rope_deltas)

    m.GlmOcrForConditionalGeneration.forward = forward
    return {"GlmOcrForConditionalGeneration.forward": original}


def _max_length(cu_seqlens: Any) -> int:
    """Longest image of the batch: one host sync per vision forward, not one per layer.

    Every layer gets the same `cu_seqlens` tensor, so the value is kept on it.
    """
    cached: int | None = getattr(cu_seqlens, "_glmocr_lf_max", None)
    if cached is None:
        cached = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        cu_seqlens._glmocr_lf_max = cached
    return cached


def _varlen_applies(module: Any, hidden_states: Any, position_embeddings: Any, flash_requested: bool) -> bool:
    """varlen_attn is FlashAttention over the packed images: CUDA, half precision, no dropout.

    Anything else (CPU, fp32, an attention dropout in training, flash-attn already chosen) keeps
    transformers' own path.
    """
    import torch

    return bool(hidden_states.is_cuda and hidden_states.dtype in (torch.bfloat16, torch.float16)
                and not (module.training and module.attention_dropout) and position_embeddings is not None
                and not flash_requested)


def _varlen() -> Callable[..., Any]:
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn  # type: ignore[no-any-return]


def _patch_vision_attn(m: ModuleType) -> dict[str, Any]:
    import torch

    varlen = _varlen()  # looked up once, at patch time: fails here if this torch has none
    original = m.GlmOcrVisionAttention.forward

    def forward(self: Any, hidden_states: Any, cu_seqlens: Any, rotary_pos_emb: Any = None,
                position_embeddings: Any = None, **kwargs: Any) -> Any:
        if not _varlen_applies(self, hidden_states, position_embeddings,
                               m.is_flash_attention_requested(self.config)):
            return original(self, hidden_states, cu_seqlens, rotary_pos_emb=rotary_pos_emb,
                            position_embeddings=position_embeddings, **kwargs)
        seq_length = hidden_states.shape[0]
        q, k, v = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        q, k = m.apply_rotary_pos_emb_vision(self.q_norm(q), self.k_norm(k), *position_embeddings)
        longest = _max_length(cu_seqlens)
        cu = cu_seqlens.to(torch.int32)
        # (tokens, heads, head_dim) in and out; default scale 1/sqrt(head_dim) = the original's `scaling`
        out = varlen(q.to(v.dtype).contiguous(), k.to(v.dtype).contiguous(), v.contiguous(), cu, cu,
                     longest, longest)
        return self.proj(out.reshape(seq_length, -1))

    m.GlmOcrVisionAttention.forward = forward
    return {"GlmOcrVisionAttention.forward": original}


def _patch_vision_positions(m: ModuleType) -> dict[str, Any]:
    """The vision tower's rotary positions from one host copy of `grid_thw`.

    transformers builds them image by image from CUDA scalars (`torch.arange(h)` of a 0-d CUDA
    tensor, `h // 2`...): about nine host syncs per image in every training step. The same CPU
    tensors are built here from Python ints, so the result is identical (integers).
    """
    import torch

    original = m.GlmOcrVisionModel.rot_pos_emb

    def rot_pos_emb(self: Any, grid_thw: Any) -> Any:
        merge = self.spatial_merge_size
        grids = grid_thw.tolist()
        pos_ids = []
        for t, h, w in grids:
            hpos = torch.arange(h).unsqueeze(1).expand(-1, w)
            hpos = hpos.reshape(h // merge, merge, w // merge, merge).permute(0, 2, 1, 3).flatten()
            wpos = torch.arange(w).unsqueeze(0).expand(h, -1)
            wpos = wpos.reshape(h // merge, merge, w // merge, merge).permute(0, 2, 1, 3).flatten()
            pos_ids.append(torch.stack([hpos, wpos], dim=-1).repeat(t, 1))
        pos = torch.cat(pos_ids, dim=0)
        largest = max(max(h, w) for _, h, w in grids)
        return self.rotary_pos_emb(largest)[pos].flatten(1), pos

    m.GlmOcrVisionModel.rot_pos_emb = rot_pos_emb
    return {"GlmOcrVisionModel.rot_pos_emb": original}


COMPILE_BACKEND = "inductor"  # the tests trace with "aot_eager": same graphs, no code generation


def _patch_compile(m: ModuleType) -> dict[str, Any]:
    """torch.compile of the text decoder layer: one graph for every layer and every sequence length.

    Dynamic shapes from the first call (the batch's padded length changes every step), so the 16
    layers share one compiled forward and backward instead of one per length; inductor fuses the
    norms, rotary, SiLU-mul and the casts between the matmuls, so far fewer kernels are launched.
    """
    import torch

    original = m.GlmOcrTextDecoderLayer.forward
    m.GlmOcrTextDecoderLayer.forward = torch.compile(original, dynamic=True, backend=COMPILE_BACKEND)
    return {"GlmOcrTextDecoderLayer.forward": original}


_PATCHES: dict[str, Callable[[ModuleType], dict[str, Any]]] = {
    "rms_norm": _patch_rms_norm, "rms_norm_liger": _patch_rms_norm_liger, "swiglu": _patch_swiglu,
    "rope": _patch_rope, "flce": _patch_flce, "vision_attn": _patch_vision_attn,
    "vision_positions": _patch_vision_positions, "compile": _patch_compile,
}


def restore(module: ModuleType) -> list[str]:
    """Undo `apply` (for side-by-side measurements in one process); returns the pieces restored."""
    originals: dict[str, dict[str, Any]] = module.__dict__.get(_ORIGINALS, {})
    for saved in originals.values():
        for path, value in saved.items():
            owner, _, name = path.rpartition(".")
            setattr(_lookup(module, owner) if owner else module, name, value)
    pieces = list(originals)
    originals.clear()
    return pieces
