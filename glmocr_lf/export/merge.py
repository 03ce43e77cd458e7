"""Export a trained GLM-OCR: merge LoRA (or re-save a full fine-tune) with `llamafactory-cli export`,
then make the result serve-ready: complete files, the training resolution, the MTP layer.

Weights and record are one result: everything is written into a hidden sibling (`.OUT.export`),
which replaces OUT only once complete and recorded, under OUT's output lock. A failed or killed
export leaves the old OUT as it was; the next export cleans the sibling (and puts back an OUT a
kill caught between the two renames of the swap).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from glmocr_lf.data.resize import TEMPORAL_PATCH_SIZE
from glmocr_lf.export.config import (
    ExportConfig,
    ExportMethodSection,
    ExportModelSection,
    ExportSection,
)
from glmocr_lf.runtime import constants as C
from glmocr_lf.runtime import launch, records
from glmocr_lf.runtime.constants import Hub
from glmocr_lf.runtime.errors import GlmocrLfError
from glmocr_lf.runtime.fsutil import (
    atomic_write_text,
    ensure_dir,
    output_lock,
    pause_point,
    remove_path,
    require_empty_dir,
    write_error,
)
from glmocr_lf.runtime.launch import Command
from glmocr_lf.runtime.modelfiles import (
    adapter_fingerprint,
    model_dir_problems,
    weights_fingerprint,
)
from glmocr_lf.runtime.versions import installed


@dataclass
class ExportRequest:
    adapter: Path | None = None  # a LoRA run dir or checkpoint
    model: Path | None = None  # a full fine-tune's output dir
    base: str | None = None
    out: Path | None = None
    force: bool = False
    hub: Hub = "hf"
    dry_run: bool = False


@dataclass
class ExportPlan:
    command: Command
    yaml_path: Path
    yaml_text: str
    out: Path
    staging: Path  # where llamafactory-cli writes; it becomes `out` once complete
    base: str
    adapter: Path | None
    image_max_pixels: int
    image_min_pixels: int
    notes: list[str] = field(default_factory=list)

    def shell_line(self) -> str:
        return self.command.shell_line()


@dataclass
class ExportResult:
    out: Path
    base: str
    adapter: str | None
    image_max_pixels: int
    mtp_tensors: int
    files: list[str] = field(default_factory=list)


def _what_to_export(request: ExportRequest, source: Path, run: records.TrainRecord) -> tuple[str, str | None]:
    """(model_name_or_path, adapter_name_or_path): a LoRA run's base and the run, or a full
    fine-tune's folder and no adapter."""
    if request.adapter is None:
        problems = model_dir_problems(source)
        if problems:
            raise GlmocrLfError(f"{source}: not a complete model\n  " + "\n  ".join(problems),
                                hint=_lora_hint(source))
        return str(source), None
    adapter_config = source / "adapter_config.json"
    if not adapter_config.is_file():
        hint = ("this looks like a full fine-tune: use --model" if (source / "config.json").is_file()
                else "point --adapter at the training output_dir or one of its checkpoint-N dirs")
        raise GlmocrLfError(f"{source}: no adapter_config.json, not a LoRA adapter", hint=hint)
    base = request.base or run.model_name_or_path
    if base is None:
        try:
            base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        except (OSError, ValueError):
            base = None
    if not base:
        raise GlmocrLfError(f"{source}: cannot tell the base model", hint="pass --base MODEL")
    return base, str(source)


def _run_record(source: Path, flag: str) -> records.TrainRecord:
    """The record of the run `source` is or belongs to (empty when trained elsewhere). A run dir
    whose record says interrupted or failed is refused: what lies in it is not that run's result (a
    --fresh run stopped before writing its own; the adapter there may be the earlier run's)."""
    run = records.read_train_record(source) or records.TrainRecord()
    if run.path is None or run.path.parent != source or run.status not in ("interrupted", "failed"):
        return run
    found = records.checkpoints(source)
    said = "was interrupted" if run.status == "interrupted" else "failed"
    raise GlmocrLfError(
        f"{source}: the training run recorded there {said} ({run.path.name}: status {run.status}); its "
        "weights may be an earlier run's",
        hint=f"export a checkpoint explicitly: glmocr-lf export {flag} "
             f"{shlex.quote(str(found[-1] if found else source / 'checkpoint-N'))}, or finish it with "
             "glmocr-lf train CONFIG --resume")


def _lora_hint(source: Path) -> str | None:
    if (source / "adapter_config.json").is_file():
        return f"this is a LoRA adapter: glmocr-lf export --adapter {shlex.quote(str(source))}"
    return None


def plan_export(request: ExportRequest) -> ExportPlan:
    from glmocr_lf.runtime.versions import Stack

    if (request.adapter is None) == (request.model is None):
        raise GlmocrLfError("give exactly one of --adapter (a LoRA run) or --model (a full fine-tune)")
    source = (request.adapter or request.model)
    assert source is not None
    source = source.expanduser().resolve()
    if not source.is_dir():
        raise GlmocrLfError(f"{source}: no such directory")
    run = _run_record(source, "--adapter" if request.adapter is not None else "--model")
    model, adapter = _what_to_export(request, source, run)
    base = model if adapter is not None else (request.base or run.model_name_or_path or str(source))
    model_id, note = launch.hub_model_id(model, request.hub, modelscope=installed("modelscope"))
    out = (request.out or (source / "merged")).expanduser().resolve()
    require_empty_dir(out, force=request.force, hint="pass --force to overwrite it")
    config = ExportConfig(
        model=ExportModelSection(model_name_or_path=model_id, adapter_name_or_path=adapter,
                                 image_max_pixels=run.image_max_pixels or C.LF_DEFAULT_IMAGE_MAX_PIXELS,
                                 image_min_pixels=run.image_min_pixels or C.LF_DEFAULT_IMAGE_MIN_PIXELS),
        method=ExportMethodSection(finetuning_type="lora" if adapter is not None else "full"),
        export=ExportSection(export_dir=str(staging_dir(out))))
    overlay = launch.common_overlay(Stack.detect(), request.hub)
    yaml_path = staging_dir(out) / C.EXPORT_YAML
    return ExportPlan(command=launch.command("export", yaml_path, overlay.env, Path(os.getcwd()),
                                             dry_run=request.dry_run),
                      yaml_path=yaml_path, yaml_text=config.to_yaml(), out=out, staging=staging_dir(out),
                      base=str(base), adapter=source if adapter is not None else None,
                      image_max_pixels=config.model.image_max_pixels, image_min_pixels=config.model.image_min_pixels,
                      notes=[n for n in (records.training_state(source, "exporting"), note) if n] + overlay.notes)


def record_resolution(out: Path, image_max_pixels: int) -> None:
    """Cap the exported processor at the training resolution (Glm46V counts 2 temporal frames)."""
    cap = TEMPORAL_PATCH_SIZE * image_max_pixels
    for name, key in (("processor_config.json", "image_processor"), ("preprocessor_config.json", None)):
        path = out / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        target = data.get(key, {}) if key else data
        if key and key not in data:
            continue
        size = target.setdefault("size", {})
        size["longest_edge"] = min(int(size.get("longest_edge", cap)), cap)
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _local_model_dir(model: str) -> Path | None:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True, allow_patterns=["*.json", "*.safetensors"]))
    except Exception:  # not cached, or offline: nothing to carry
        return None


def mtp_keys(model_dir: Path) -> tuple[str, list[tuple[Path, str]]]:
    """The multi-token-prediction tensors of a checkpoint: (prefix, [(shard, key), ...])."""
    from safetensors import safe_open

    config = json.loads((model_dir / "config.json").read_text())
    layers = (config.get("text_config") or config).get("num_hidden_layers")
    prefix = f"model.language_model.layers.{layers}."
    found: list[tuple[Path, str]] = []
    for shard in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            found.extend((shard, key) for key in handle.keys() if key.startswith(prefix))  # noqa: SIM118 - safe_open is not iterable
    return prefix, found


def carry_mtp(base_dir: Path, out: Path) -> int:
    """Copy the base checkpoint's MTP layer into the export (vLLM's speculative decoding loads it)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    _prefix, found = mtp_keys(base_dir)
    if not found:
        return 0
    _, present = mtp_keys(out)
    if present:
        return 0
    tensors: dict[str, torch.Tensor] = {}
    for shard, key in found:
        with safe_open(str(shard), framework="pt") as handle:
            tensors[key] = handle.get_tensor(key)
    shard_name = "model-mtp.safetensors"
    save_file(tensors, str(out / shard_name), metadata={"format": "pt"})
    index_path = out / "model.safetensors.index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
    else:
        index = {"metadata": {}, "weight_map": {}}
        for shard in sorted(out.glob("*.safetensors")):
            if shard.name == shard_name:
                continue
            with safe_open(str(shard), framework="pt") as handle:
                index["weight_map"].update({k: shard.name for k in handle.keys()})  # noqa: SIM118
    index["weight_map"].update({key: shard_name for key in tensors})
    atomic_write_text(index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")
    return len(tensors)


def staging_dir(out: Path) -> Path:
    """The hidden sibling an export is written into (one at a time: OUT's output lock)."""
    return out.parent / f".{out.name}.export"


def _old_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.old"


def _clean_leftovers(out: Path, staging: Path) -> None:
    """What an export killed earlier left: its sibling, and an old OUT moved aside for a swap."""
    old = _old_dir(out)
    if old.exists() and not out.exists():  # killed between the swap's two renames: put it back
        os.replace(old, out)
    remove_path(old)
    remove_path(staging)


def _swap_into_place(staging: Path, out: Path) -> None:
    """Replace `out` by the complete `staging`: two renames, with the old OUT aside between them."""
    old = _old_dir(out)
    moved = False
    if out.exists():
        os.replace(out, old)
        moved = True
    pause_point("export-swap")
    try:
        os.replace(staging, out)
    except BaseException:
        if moved:
            os.replace(old, out)
        raise
    if moved:
        remove_path(old)


def execute_export(plan: ExportPlan, on_line: Callable[[str], None]) -> ExportResult:
    cmd = plan.command
    staging = plan.staging
    with output_lock(plan.out, what="export"):
        _clean_leftovers(plan.out, staging)
        ensure_dir(staging)
        atomic_write_text(plan.yaml_path, plan.yaml_text)
        log_path = staging / C.EXPORT_LOG
        result = launch.run(cmd, log_path, on_line=on_line)
        if result.exit_code != 0:
            raise launch.failure(f"export failed (exit code {result.exit_code})", result, log_path)
        problems = model_dir_problems(staging)
        if problems:
            raise GlmocrLfError(f"the exported model is incomplete; {plan.out} is as it was\n  "
                                + "\n  ".join(problems), hint=f"full output: {log_path}")
        record_resolution(staging, plan.image_max_pixels)
        base_dir = _local_model_dir(plan.base)
        carried = carry_mtp(base_dir, staging) if base_dir is not None else 0
        records.write_export_record(staging, records.ExportRecord(
            command=cmd.shell_line(), argv=cmd.argv, env=cmd.env, exported=records.now(), base=plan.base,
            adapter=str(plan.adapter) if plan.adapter else None,
            adapter_sha256=adapter_fingerprint(plan.adapter) if plan.adapter else None,
            weights_sha256=weights_fingerprint(staging),
            image_max_pixels=plan.image_max_pixels, image_min_pixels=plan.image_min_pixels,
            mtp_tensors_carried=carried))
        try:
            _swap_into_place(staging, plan.out)
        except OSError as err:
            raise write_error(plan.out, err) from None
    return ExportResult(out=plan.out, base=plan.base, adapter=str(plan.adapter) if plan.adapter else None,
                        image_max_pixels=plan.image_max_pixels, mtp_tensors=carried,
                        files=sorted(p.name for p in plan.out.iterdir()))
