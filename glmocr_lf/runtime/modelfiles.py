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
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from glmocr_lf.runtime import constants as C
from glmocr_lf.runtime.constants import HF_MODEL_ID, MODEL_TYPE
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


def chat_template_source(model_dir: Path) -> str | None:
    """The file that carries the chat template, or None."""
    for name in ("chat_template.jinja", "chat_template.json"):
        if (model_dir / name).is_file():
            return name
    for name in ("tokenizer_config.json", "processor_config.json"):
        if "chat_template" in (_json(model_dir / name) or {}):
            return f"{name}: chat_template"
    return None


@dataclass(frozen=True)
class ModelCheck:
    """One part of a model folder: `detail` says what was found, or what is wrong (naming the
    folder) with `fix`."""

    part: str  # config, weights, tokenizer, image_processor, video_processor, chat_template
    ok: bool
    detail: str
    fix: str | None = None


def _missing_config(model_dir: Path) -> ModelCheck:
    if not model_dir.is_dir():
        what = "does not exist" if not model_dir.exists() else "is not a directory"
        return ModelCheck("config", False, f"{model_dir} {what}", "pass the model's directory (the one holding config.json)")
    if (model_dir / "adapter_config.json").is_file():
        return ModelCheck("config", False, f"{model_dir} is a LoRA adapter, not a model",
                          f"pass the base model ({HF_MODEL_ID}), or merge it first: "
                          f"`glmocr-lf export --adapter {shlex.quote(str(model_dir))}`")
    return ModelCheck("config", False, f"{model_dir} has no config.json: not a model directory",
                      f"pass a GLM-OCR checkpoint directory (e.g. a download of {HF_MODEL_ID})")


def _config_check(model_dir: Path) -> ModelCheck:
    config = _json(model_dir / "config.json")
    if config is None:
        return ModelCheck("config", False, f"{model_dir / 'config.json'}: unreadable (not a JSON object)",
                          f"download the model again, or copy config.json from {HF_MODEL_ID}")
    kind = config.get("model_type")
    if kind != MODEL_TYPE:
        return ModelCheck("config", False, f"{model_dir}: model_type is {kind!r}, not {MODEL_TYPE!r}",
                          f"pass a GLM-OCR checkpoint ({HF_MODEL_ID}) or a model exported from one")
    return ModelCheck("config", True, f"model_type: {MODEL_TYPE}")


def model_dir_checks(model_dir: Path) -> list[ModelCheck]:
    """Every part LLaMA-Factory needs to train or serve a GLM-OCR checkpoint from `model_dir`, checked
    from its files. The one definition of a usable model folder: train and export refuse on the
    failed parts (`model_dir_problems`), doctor shows them all."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        return [_missing_config(model_dir)]
    checks = [_config_check(model_dir)]
    weights = sorted(p.name for p in [*model_dir.glob("*.safetensors"), *model_dir.glob("*.bin")])
    found = weights[0] if len(weights) == 1 else f"{len(weights)} files ({', '.join(weights[:2])}, ...)"
    checks.append(ModelCheck("weights", True, found) if weights else
                  ModelCheck("weights", False, f"{model_dir} has no weights (*.safetensors)",
                             "copy the checkpoint's *.safetensors files into it"))
    tokenizer = next((n for n in ("tokenizer.json", "tokenizer_config.json") if (model_dir / n).is_file()), None)
    checks.append(ModelCheck("tokenizer", True, tokenizer) if tokenizer else
                  ModelCheck("tokenizer", False, f"{model_dir} has no tokenizer files (tokenizer.json, "
                             "tokenizer_config.json)", f"copy them from the base model ({HF_MODEL_ID})"))
    for part, source in processor_sources(model_dir).items():
        file_name = PROCESSOR_FILES[part]
        checks.append(ModelCheck(part, True, source) if source else ModelCheck(
            part, False, f"{model_dir} has no {file_name} (nor {part} in {PROCESSOR_CONFIG}); "
                         "LLaMA-Factory would fail with 'Processor was not found'",
            f"copy {file_name} from the base model ({HF_MODEL_ID}) into {model_dir}"))
    template = chat_template_source(model_dir)
    checks.append(ModelCheck("chat_template", True, template) if template else
                  ModelCheck("chat_template", False, f"{model_dir} has no chat template",
                             f"copy chat_template.jinja from the base model ({HF_MODEL_ID})"))
    return checks


def model_dir_problems(model_dir: Path) -> list[str]:
    """Why `model_dir` is not a GLM-OCR checkpoint LLaMA-Factory can train or serve, each with its
    fix; empty if it is."""
    return [f"{c.detail}; {c.fix}" if c.fix else c.detail for c in model_dir_checks(model_dir) if not c.ok]


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


def model_problems(name: str, *, hub: str = "hf", consequence: str = "LLaMA-Factory would fail to load "
                   "its tokenizer") -> list[str]:
    """Why `name` cannot be loaded here, checked before anything starts (train and eval both ask):
    a local folder that is not a complete GLM-OCR checkpoint, or a hub id that is neither in the
    cache nor reachable. Empty when it can be loaded."""
    local = Path(name).expanduser()
    if name.startswith((".", "/", "~")) or local.exists():
        return model_dir_problems(local)
    missing = uncached_hub_model(name) if hub == "hf" else None
    return [f"{missing}; {consequence}. Fix: {not_cached_fix(name)}"] if missing else []


ADAPTER_WEIGHTS = "adapter_model.safetensors"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Hasher:
    """Each file read once: a file whose size and mtime are those it had when this hasher read it is
    not read again. One hasher per command (`eval run` plans twice: before and after the model loads)."""

    def __init__(self) -> None:
        self._made: dict[Path, list[Any]] = {}

    def entry(self, path: Path, remembered: list[Any] | None = None) -> list[Any]:
        """[size, mtime_ns, sha256] of `path`: the one this hasher made, else `remembered` (an earlier
        run's record), while the file's size and mtime are unchanged; else read now."""
        stat = path.stat()
        now = [stat.st_size, stat.st_mtime_ns]
        made = self._made.get(path.absolute())
        if made is not None and made[:2] == now:
            return made
        if remembered and remembered[:2] == now:
            return list(remembered)
        made = self._made[path.absolute()] = [*now, file_sha256(path)]
        return made

    def sha256(self, path: Path) -> str:
        """The hash of what `path` holds now, never taken from an earlier run's record."""
        return str(self.entry(path)[2])


def adapter_fingerprint(adapter_dir: Path, hasher: Hasher | None = None) -> str | None:
    """The sha256 of a LoRA adapter's weights (what a merge was made from); None without weights."""
    weights = adapter_dir / ADAPTER_WEIGHTS
    return (hasher or Hasher()).sha256(weights) if weights.is_file() else None


def weights_fingerprint(model_dir: Path) -> dict[str, str]:
    """The sha256 of each weights file of a model folder, by name."""
    return {p.name: file_sha256(p) for p in sorted(Path(model_dir).glob("*.safetensors"))}


def weights_problem(model_dir: Path, recorded: dict[str, str], hasher: Hasher | None = None) -> str | None:
    """Why the weights in `model_dir` are not the ones its export record names, or None."""
    now = sorted(p.name for p in Path(model_dir).glob("*.safetensors"))
    if now != sorted(recorded):
        return f"holds weights {now}, its export record names {sorted(recorded)}"
    for name, digest in recorded.items():
        if (hasher or Hasher()).sha256(Path(model_dir) / name) != digest:
            return f"{name} is not the file its export record names (written over since?)"
    return None


def stale_merge(model_dir: Path, hasher: Hasher | None = None) -> tuple[str, str] | None:
    """(the adapter, or "" for a full fine-tune; why) when an exported model no longer matches what
    its export recorded: its weights were replaced, or the adapter it was merged from changed.

    `export` records the adapter and its fingerprint; training that adapter again (`train --fresh`,
    or more steps) changes it, and the merged copy would be scored or served stale. Every file is
    read for this check (`hasher` keeps what this command read already), never trusted from an
    earlier run's record: a file written over in place keeps its size and can keep its mtime."""
    record = read_export_record(model_dir)
    if record is not None and record.weights_sha256 is not None:
        problem = weights_problem(model_dir, record.weights_sha256, hasher)
        if problem:
            return record.adapter or "", f"{model_dir}: {problem}"
    adapter, merged_from = (record.adapter, record.adapter_sha256) if record else (None, None)
    if adapter is None or merged_from is None:
        return None
    now = adapter_fingerprint(Path(adapter), hasher)
    if now == merged_from:
        return None
    what = "is gone" if now is None else "has changed since (trained again?)"
    return adapter, f"{model_dir} was merged from the adapter {adapter}, which {what}"


# The files a model's answers depend on (weights, configs, tokenizer, processor, chat template);
# not the logs and records written beside them, nor a training run's state.
FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".jinja", ".model", ".txt", ".tiktoken")
NOT_THE_MODEL = frozenset({"training_args.bin", "trainer_state.json", "all_results.json", "train_results.json",
                           "eval_results.json", "trainer_log.jsonl", "adapter_model.bin.index.json"})
# name -> [size, mtime_ns, sha256]: a file whose size and mtime are unchanged is not hashed again
FileHashes = dict[str, list[Any]]


def fingerprint_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix in FINGERPRINT_SUFFIXES and p.name not in NOT_THE_MODEL
                  and not p.name.startswith("glmocr_lf_"))


def folder_fingerprint(folder: Path, known: FileHashes | None = None,
                       hasher: Hasher | None = None) -> tuple[str, FileHashes]:
    """(sha256 over the model files' names and contents, those files' hashes): equal for a copy
    of the same model, different after any retraining or re-export that changed a weight. A file
    `known` (an earlier run's record) or `hasher` hashed, unchanged in size and mtime since, is not read."""
    hasher = hasher or Hasher()
    hashes = {path.name: hasher.entry(path, (known or {}).get(path.name)) for path in fingerprint_files(folder)}
    digest = hashlib.sha256(json.dumps([[name, h[2]] for name, h in sorted(hashes.items())]).encode())
    return digest.hexdigest(), hashes


def model_folder(name: str) -> Path | None:
    """The folder `name` loads from: itself, or a hub id's snapshot in the cache; None if neither."""
    local = Path(name).expanduser()
    if local.is_dir():
        return local
    return cached_snapshot(name) if not local.exists() else None
