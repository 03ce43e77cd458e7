"""What a usable GLM-OCR model directory holds, checked from its files (no transformers import).

transformers 5 saves the processor either as one `processor_config.json` holding `image_processor`
and `video_processor`, or (older layout, as on the hub) as `preprocessor_config.json` +
`video_preprocessor_config.json`. Either is fine; LLaMA-Factory fails with "Processor was not found"
when the image or video part is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from glmocr_lf.runtime import constants as C
from glmocr_lf.runtime.constants import MODEL_TYPE
from glmocr_lf.runtime.records import read_export_record

HUB_PROBE_TIMEOUT_S = 3.0


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


PROCESSOR_FILES = {"image_processor": "preprocessor_config.json",
                   "video_processor": "video_preprocessor_config.json"}
PROCESSOR_CONFIG = "processor_config.json"


def processor_sources(model_dir: Path) -> dict[str, str | None]:
    """Where each processor part is configured (a file, or an entry of processor_config.json); None if nowhere."""
    combined = _json(model_dir / PROCESSOR_CONFIG) or {}
    sources: dict[str, str | None] = {}
    for part, file_name in PROCESSOR_FILES.items():
        if (model_dir / file_name).is_file():
            sources[part] = file_name
        elif isinstance(combined.get(part), dict):
            sources[part] = f"{PROCESSOR_CONFIG}: {part}"
        else:
            sources[part] = None
    return sources


def has_chat_template(model_dir: Path) -> bool:
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return True
    for name in ("tokenizer_config.json", "processor_config.json"):
        if "chat_template" in (_json(model_dir / name) or {}):
            return True
    return False


def model_type(model_dir: Path) -> str | None:
    config = _json(model_dir / "config.json")
    return None if config is None else config.get("model_type")


def model_dir_problems(model_dir: Path) -> list[str]:
    """Why `model_dir` is not a GLM-OCR checkpoint LLaMA-Factory can train or serve; empty if it is."""
    if not model_dir.is_dir():
        return [f"{model_dir} does not exist" if not model_dir.exists() else f"{model_dir} is not a directory"]
    if not (model_dir / "config.json").is_file():
        return [f"{model_dir} has no config.json: not a model directory"]
    problems = []
    kind = model_type(model_dir)
    if kind != MODEL_TYPE:
        problems.append(f"{model_dir} is a {kind!r} model, not {MODEL_TYPE}")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        problems.append(f"{model_dir} has no weights (*.safetensors)")
    if not ((model_dir / "tokenizer.json").is_file() or (model_dir / "tokenizer_config.json").is_file()):
        problems.append(f"{model_dir} has no tokenizer files")
    for part, source in processor_sources(model_dir).items():
        if source is None:
            problems.append(f"{model_dir} has no {part.replace('_', ' ')} config; LLaMA-Factory fails with 'Processor was not "
                            "found': copy the processor files from the base model")
    if not has_chat_template(model_dir):
        problems.append(f"{model_dir} has no chat template")
    return problems


def cached_snapshot(repo_id: str) -> Path | None:
    """The Hugging Face cache's snapshot of `repo_id` (by its config.json), never downloading."""
    # read the environment now, not when huggingface_hub was first imported
    cache = os.environ.get(C.ENV_HF_HUB_CACHE) or (
        os.path.join(os.environ[C.ENV_HF_HOME], "hub") if os.environ.get(C.ENV_HF_HOME) else None)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # the light install: read the cache's documented layout ourselves
        root = Path(cache or Path.home() / ".cache" / "huggingface" / "hub")
        repo = root / ("models--" + repo_id.replace("/", "--"))
        try:
            snapshot = repo / "snapshots" / (repo / "refs" / "main").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return snapshot if (snapshot / "config.json").is_file() else None
    hit = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache)
    return Path(hit).parent if isinstance(hit, str) else None


def hub_offline() -> bool:
    return os.environ.get(C.ENV_HF_HUB_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    host = urlparse(os.environ.get(C.ENV_HF_ENDPOINT) or "https://huggingface.co").hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def not_cached_fix(model: str) -> str:
    return (f"download it on a connected machine (`hf download {model}`) and bring its cache (HF_HOME) "
            "or the folder here, then pass that folder; to try the pipeline here without it: "
            "`glmocr-lf smoke-model tiny`, then `glmocr-lf train CONFIG model_name_or_path=tiny bf16=false`")


def uncached_hub_model(model: str) -> str | None:
    """Why LLaMA-Factory could not load hub id `model` here (not cached, and no hub), or None."""
    if cached_snapshot(model) is not None:
        return None
    if hub_offline():
        why = "HF_HUB_OFFLINE is set"
    elif not hub_reachable():
        why = "the hub is unreachable from here"
    else:
        return None
    return f"{model} is not in the Hugging Face cache and {why}"


ADAPTER_WEIGHTS = "adapter_model.safetensors"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def adapter_fingerprint(adapter_dir: Path) -> str | None:
    """The sha256 of a LoRA adapter's weights (what a merge was made from); None without weights."""
    weights = adapter_dir / ADAPTER_WEIGHTS
    return file_sha256(weights) if weights.is_file() else None


def stale_merge(model_dir: Path) -> tuple[str, str] | None:
    """(the adapter, why) when a merged model no longer matches the adapter it was merged from.

    `export` records the adapter and its fingerprint; training that adapter again (`train --fresh`,
    or more steps) changes it, and the merged copy would be scored or served stale."""
    record = read_export_record(model_dir)
    adapter, merged_from = (record.adapter, record.adapter_sha256) if record else (None, None)
    if adapter is None or merged_from is None:
        return None
    now = adapter_fingerprint(Path(adapter))
    if now == merged_from:
        return None
    what = "is gone" if now is None else "has changed since (trained again?)"
    return adapter, f"{model_dir} was merged from the adapter {adapter}, which {what}"
