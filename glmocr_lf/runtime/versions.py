"""What is installed, read from package metadata (never by importing torch/transformers/llamafactory)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

STACK = ("llamafactory", "transformers", "torch", "torchvision", "torchaudio", "peft", "trl",
         "datasets", "accelerate", "deepspeed")

# Facts about transformers that change what we may write (see README § Version-aware rendering).
GLM_OCR_FIRST_TRANSFORMERS = Version("5.1.0")
WARMUP_RATIO_REMOVED = Version("5.15.0")
GRADIENT_CHECKPOINTING_BROKEN = Version("5.23.0")
FLASH_ATTN_BROKEN = Version("5.6.0")
# The versions this project is tested against (constraints.txt). Used when rendering for a machine
# where the stack is not installed.
PINNED = {"llamafactory": "0.9.5", "transformers": "5.6.0", "torch": "2.14.1"}


def installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def parse(version: str | None) -> Version | None:
    if version is None:
        return None
    try:
        return Version(version)
    except InvalidVersion:
        return None


@dataclass(frozen=True)
class Stack:
    """Versions of the training stack that a rendered config must satisfy."""

    versions: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def detect(cls) -> Stack:
        return cls({name: installed(name) for name in STACK})

    @classmethod
    def pinned(cls) -> Stack:
        return cls(dict(PINNED))

    def get(self, dist: str) -> str | None:
        return self.versions.get(dist)

    def version(self, dist: str) -> Version | None:
        return parse(self.get(dist))

    @property
    def transformers(self) -> Version | None:
        return self.version("transformers")

    def has_glm_ocr(self) -> bool:
        v = self.transformers
        return v is not None and v >= GLM_OCR_FIRST_TRANSFORMERS

    def renders_warmup_as_steps(self) -> bool:
        """transformers >= 5.15 removed `warmup_ratio`; unknown versions get the form that works on all."""
        v = self.transformers
        return v is None or v >= WARMUP_RATIO_REMOVED

    def fa2_broken(self) -> str | None:
        """Why `flash_attn: fa2` fails with these transformers (one message for doctor and validate)."""
        if self.transformers != FLASH_ATTN_BROKEN:
            return None
        return (f"fa2 (FlashAttention-2) is broken with transformers {self.get('transformers')} "
                "(LLaMA-Factory#10610)")

    def gradient_checkpointing_broken(self) -> bool:
        v = self.transformers
        return v is not None and v >= GRADIENT_CHECKPOINTING_BROKEN

    def llamafactory_rejects(self) -> list[str]:
        """Installed packages outside the ranges llamafactory declares (it refuses them unless
        DISABLE_VERSION_CHECK=1). Empty when llamafactory is not installed."""
        if self.get("llamafactory") is None:
            return []
        try:
            requires = metadata.requires("llamafactory") or []
        except metadata.PackageNotFoundError:  # its version is known, its metadata is not here
            return []
        out = []
        for line in requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is not None or req.name not in {"transformers", "datasets", "accelerate",
                                                           "peft", "trl"}:
                continue
            have = self.version(req.name)
            if have is not None and not req.specifier.contains(have, prereleases=True):
                out.append(f"{req.name} {have} (llamafactory wants {req.specifier})")
        return out


def describe(stack: Stack, names: tuple[str, ...] = ("llamafactory", "transformers", "torch")) -> str:
    return ", ".join(f"{n} {stack.get(n) or 'not installed'}" for n in names)
