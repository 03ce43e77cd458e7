"""Check every sample of a GLM-OCR ShareGPT dataset before any GPU time is spent.

Problem lines are `FILE: sample N: FIELD: message` (JSONL: `FILE:LINE: sample N: FIELD: message`),
N counted from 0 (`jq '.[N]'`), LINE from 1. Warnings read `... FIELD: warning: message`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from glmocr_lf.data.imagecheck import ImageCheck, ImageChecker, ImageRequest
from glmocr_lf.data.info import is_registered_file, local_file, read_info
from glmocr_lf.data.report import (
    CheckOptions,
    SampleProblem,
    SampleRecord,
    Severity,
    ValidationReport,
)
from glmocr_lf.data.resize import (
    PROCESSOR_MAX_ASPECT,
    ImageSizeError,
    image_tokens,
    lf_preprocess_size,
    squeezed_size,
)
from glmocr_lf.data.samples import RawSample, SampleFile, json_type, read_samples, unencodable
from glmocr_lf.data.tokens import (
    TextCounter,
    budget,
    build_turns,
    estimate_text_tokens,
    tokenizer_counter,
)
from glmocr_lf.runtime.constants import (
    IMAGE_PLACEHOLDER,
    TASK_PROMPTS,
)
from glmocr_lf.runtime.errors import DataError
from glmocr_lf.runtime.fsutil import is_inside

ROLES = ("system", "user", "assistant")
TASK_PROMPT_SET = frozenset(TASK_PROMPTS.values())
Progress = Callable[[int, int], None]  # (done, total) image checks


@dataclass
class _Parsed:
    """A structurally valid sample, waiting for its images."""

    raw: RawSample
    system: str | None
    pairs: list[tuple[str, str]]
    prompt: str
    image_keys: list[int]  # indexes into the unique image request list; -1: refused before checking
    key: tuple[Any, ...]


def resolve_media_dir(dataset: Path, media_dir: Path | None) -> Path:
    root = media_dir if media_dir is not None else Path(dataset).parent
    if not root.exists():
        raise DataError(f"{root}: media dir does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: media dir is not a directory")
    return root


def resolve_source(source: str | Path, data_dir: Path, options: CheckOptions) -> tuple[Path, CheckOptions]:
    """A dataset file as given, or the file behind a name registered in DATA/dataset_info.json, with
    the options that read it as training will (the entry's layout, images resolved from DATA)."""
    path = Path(source)
    if path.is_file():
        return path, options
    try:  # a name (a folder of the same name, e.g. the images, is not the dataset)
        path, layout = local_file(data_dir, str(source))
    except DataError:
        if path.exists() and not _registered(data_dir, str(source)):
            raise DataError(f"{source}: is a directory and not a registered dataset name") from None
        if path.suffix.lower() in (".json", ".jsonl"):
            raise DataError(f"{source}: no such file") from None
        raise
    # registered copies resolve from the data dir and link to the user's images
    return path, replace(options, media_dir=options.media_dir or data_dir, allow_outside=True, layout=layout)


def _registered(data_dir: Path, name: str) -> bool:
    """Whether DATA/dataset_info.json has an entry `name` (usable or not: its own error then says why)."""
    try:
        return name in read_info(data_dir)
    except DataError:
        return False


def validate_file(path: Path, options: CheckOptions | None = None, *,
                  progress: Progress | None = None, collect_records: bool = False) -> ValidationReport:
    """Every problem of every sample; raises DataError only when the file itself is unusable.

    `collect_records` also keeps per-sample sizes and token counts (for `stats`)."""
    options = options or CheckOptions()
    if not options.allow_outside and options.media_dir is None and is_registered_file(path):
        # `data register` staged this file; its image links point where the images live, by design
        options = replace(options, allow_outside=True)
    root = resolve_media_dir(path, options.media_dir)
    sample_file = read_samples(path, options.layout)
    counter: TextCounter = estimate_text_tokens
    if options.model is not None:
        counter = tokenizer_counter(options.model)
    validator = _Validator(sample_file, root, options, counter, progress)
    validator.collect = collect_records
    return validator.run()


class _Validator:
    def __init__(self, sample_file: SampleFile, root: Path, options: CheckOptions,
                 counter: TextCounter, progress: Progress | None) -> None:
        self.file = sample_file
        self.name = str(sample_file.path)
        self.root = os.path.normpath(os.path.abspath(root))
        self.root_real = None if options.allow_outside else os.path.realpath(self.root)
        self.options = options
        self.count = counter
        self.progress = progress
        self.collect = False
        self.problems: list[SampleProblem] = []
        self.checker = ImageChecker(len(sample_file.samples), options.workers)
        self.request_index: dict[str, int] = {}
        self.report = ValidationReport(
            file=self.name, format=sample_file.format, media_dir=root.as_posix(),
            samples=len(sample_file.samples), options=options,
            token_count="exact" if options.model is not None else "estimated", sample_file=sample_file)

    def problem(self, raw: RawSample, where: str, message: str, severity: Severity = "error") -> None:
        where = self.file.layout.field(where)
        self.problems.append(SampleProblem(self.name, raw.index, raw.line, where, message, severity))

    # -- structure ------------------------------------------------------------------------------
    def parse(self, raw: RawSample) -> _Parsed | None:
        sample = raw.data
        if not isinstance(sample, dict):
            self.problem(raw, "(sample)", f"expected an object with messages and images, got {json_type(sample)}")
            return None
        before = len(self.problems)
        messages = sample.get("messages")
        roles: list[str] = []
        contents: list[str] = []
        if "messages" not in sample:
            hint = " (this looks like the conversations/from/value layout; use messages/role/content)" \
                if "conversations" in sample and self.file.layout.is_ours else ""
            self.problem(raw, "messages", f"missing{hint}")
        elif not isinstance(messages, list):
            self.problem(raw, "messages", f"expected a list of messages, got {json_type(messages)}")
        elif not messages:
            self.problem(raw, "messages", "empty list; a sample needs a user prompt and an assistant answer")
        else:
            roles, contents = self._messages(raw, messages)
            if len(self.problems) == before:
                self._check_order(raw, roles, contents)
        images = sample.get("images", [])
        if images is None:
            images = []
        if not isinstance(images, list):
            self.problem(raw, "images", f"expected a list of image paths, got {json_type(images)}")
            images = []
        if len(self.problems) == before:
            placeholders = sum(c.count(IMAGE_PLACEHOLDER) for c in contents)
            if placeholders != len(images):
                self.problem(raw, "images", f"{_n(len(images), 'image')} but {_n(placeholders, IMAGE_PLACEHOLDER + ' placeholder')} "
                             "in messages; they must be equal")
        for where, message in unencodable(sample):
            self.problem(raw, where or "(sample)", message)
        if len(self.problems) != before:
            return None
        keys = [self._image_request(raw, i, image) for i, image in enumerate(images)]
        if len(self.problems) != before:
            return None
        system = contents[0] if roles[0] == "system" else None
        offset = 1 if system is not None else 0
        pairs = [(contents[i], contents[i + 1]) for i in range(offset, len(contents), 2)]
        key = (tuple(roles), tuple(contents), tuple(str(i) for i in images))
        return _Parsed(raw, system, pairs, pairs[0][0], keys, key)

    def _messages(self, raw: RawSample, messages: list[Any]) -> tuple[list[str], list[str]]:
        """Each message's role and content checked; the roles and contents ("" where refused)."""
        roles: list[str] = []
        contents: list[str] = []
        tags = self.file.layout
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                self.problem(raw, where, f"expected an object with role and content, got {json_type(message)}")
                continue
            role, content = message.get("role"), message.get("content")
            if "role" not in message:
                self.problem(raw, f"{where}.role", "missing")
            elif not isinstance(role, str):
                self.problem(raw, f"{where}.role", f"expected a string, got {json_type(role)}")
            elif role not in ROLES:
                self.problem(raw, f"{where}.role", f"unknown role {role!r}; use {tags.user} or {tags.assistant} "
                             f"(or {tags.system} first)")
            if "content" not in message:
                self.problem(raw, f"{where}.content", "missing")
            elif not isinstance(content, str):
                self.problem(raw, f"{where}.content", f"expected a string, got {json_type(content)}")
            roles.append(role if isinstance(role, str) else "")
            contents.append(content if isinstance(content, str) else "")
        return roles, contents

    def _check_order(self, raw: RawSample, roles: list[str], contents: list[str]) -> None:
        start = 1 if roles[0] == "system" else 0
        for i in range(start, len(roles)):
            expected = "user" if (i - start) % 2 == 0 else "assistant"
            if roles[i] != expected:
                why = "system is only allowed as the first message" if roles[i] == "system" else \
                    "roles alternate user, assistant, starting with user"
                self.problem(raw, f"messages[{i}].role", f"expected {expected!r}, got {roles[i]!r} ({why})")
                return
        if len(roles) == start:
            self.problem(raw, "messages", "only a system message; add a user prompt and an assistant answer")
        elif roles[-1] != "assistant":
            self.problem(raw, f"messages[{len(roles) - 1}]",
                         "the last message must be the assistant's answer (LLaMA-Factory drops this sample)")
        for i in range(start + 1, len(roles), 2):
            if not contents[i].strip():
                self.problem(raw, f"messages[{i}].content", "empty assistant answer")

    def _image_request(self, raw: RawSample, i: int, image: Any) -> int:
        where = f"images[{i}]"
        if not isinstance(image, str):
            self.problem(raw, where, f"expected a path string, got {json_type(image)}")
            return -1
        if not image.strip():
            self.problem(raw, where, "empty path")
            return -1
        if "\x00" in image:
            self.problem(raw, where, "path contains a NUL byte (\\u0000)")
            return -1
        if os.path.isabs(image):
            if not self.options.allow_outside:
                self.problem(raw, where, f"absolute path {image!r}; use a path relative to the media dir "
                             f"{self.report.media_dir} (or pass --allow-outside)")
                return -1
            full = os.path.normpath(image)
        else:
            full = os.path.normpath(os.path.join(self.root, image))
            if not self.options.allow_outside and not is_inside(full, self.root):
                self.problem(raw, where, f"path {image!r} leaves the media dir {self.report.media_dir} "
                             "(or pass --allow-outside)")
                return -1
        key = self.request_index.get(full)
        if key is None:
            key = self.request_index[full] = len(self.request_index)
            self.checker.submit(ImageRequest(full, self.root_real))
        return key

    # -- images, tokens, warnings ---------------------------------------------------------------
    def run(self) -> ValidationReport:
        with self.checker:
            parsed = [self.parse(raw) for raw in self.file.samples]
            total = len(self.request_index)
            done = 0

            def step(n: int) -> None:
                nonlocal done
                done += n
                if self.progress:
                    self.progress(done, total)

            checks = self.checker.results(step)
        seen: dict[tuple[Any, ...], int] = {}
        prompts: dict[str, list[int]] = {}
        image_after: list[RawSample] = []
        for item in parsed:
            if item is None:
                continue
            self._finish(item, checks)
            first = seen.setdefault(item.key, item.raw.index)
            if first != item.raw.index:
                self.problem(item.raw, "(sample)", f"exact duplicate of sample {first}", "warning")
            prompt = item.prompt.replace(IMAGE_PLACEHOLDER, "").strip()
            if prompt not in TASK_PROMPT_SET:
                prompts.setdefault(prompt, []).append(item.raw.index)
            if IMAGE_PLACEHOLDER in item.prompt and not item.prompt.lstrip().startswith(IMAGE_PLACEHOLDER):
                image_after.append(item.raw)
        by_index = {raw.index: raw for raw in self.file.samples}
        for prompt, indexes in prompts.items():
            field_name = _prompt_field(by_index[indexes[0]])
            self.problem(by_index[indexes[0]], field_name,
                         f"prompt {prompt!r} is not one of GLM-OCR's task prompts ({', '.join(TASK_PROMPTS.values())})"
                         f"{_also(indexes)}; fine for a custom task", "warning")
        if image_after:
            self.problem(image_after[0], _prompt_field(image_after[0]),
                         f"{IMAGE_PLACEHOLDER} comes after the prompt text{_also([r.index for r in image_after])}; "
                         "GLM-OCR is trained with the image first", "warning")
        self.problems.sort(key=lambda p: (p.index, p.severity == "warning"))
        self.report.problems = self.problems
        return self.report

    def _check_sizes(self, raw: RawSample, keys: list[int], checks: list[ImageCheck]) -> bool:
        """Sizes LLaMA-Factory's resize fails on are errors and squeezed aspect ratios warnings,
        whatever the options (the token count needs --cutoff-len or collected records); True when
        an image would crash training."""
        broken = False
        max_pixels, min_pixels = self.options.image_max_pixels, self.options.image_min_pixels
        for i, key in enumerate(keys):
            check = checks[key]
            if check.error is not None:
                continue
            w, h = check.width, check.height
            try:
                squeezed = squeezed_size(w, h, max_pixels, min_pixels)
                lf_preprocess_size(w, h, max_pixels, min_pixels)
            except ImageSizeError as err:
                self.problem(raw, f"images[{i}]", f"{w}x{h} pixels: {err}; crop or split the image")
                broken = True
                continue
            if squeezed is not None:
                self.problem(raw, f"images[{i}]", f"{w}x{h} pixels: aspect ratio over {PROCESSOR_MAX_ASPECT}:1, "
                             f"which GLM-OCR's processor refuses; LLaMA-Factory squeezes it to "
                             f"{squeezed[0]}x{squeezed[1]} first, distorting its text: crop or split the image",
                             "warning")
        return broken

    def _finish(self, item: _Parsed, checks: list[ImageCheck]) -> None:
        raw = item.raw
        sizes: list[tuple[int, int]] = []
        broken = False
        for i, key in enumerate(item.image_keys):
            check = checks[key]
            if check.error is not None:
                self.problem(raw, f"images[{i}]", check.error)
                broken = True
            else:
                sizes.append((check.width, check.height))
        broken = self._check_sizes(raw, item.image_keys, checks) or broken
        if broken:
            if self.collect:
                self.report.records.append(SampleRecord(raw.index, item.prompt, tuple(sizes), None, None, False, False))
            return
        options = self.options
        if options.cutoff_len is None and not self.collect:
            return
        per_image = [image_tokens(w, h, options.image_max_pixels, options.image_min_pixels) for w, h in sizes]
        turns = build_turns(item.system, item.pairs, per_image, self.count)
        result = budget(turns, sum(per_image) + 2 * len(per_image), options.cutoff_len)
        if result.image_turns_cut:
            self.problem(raw, "images", f"image tokens would be cut: the sample needs {_tokens(result.total, self)} "
                         f"({result.image} for images) but cutoff_len is {options.cutoff_len}; this crashes training, "
                         "raise cutoff_len or lower image_max_pixels")
        elif result.answer_turns_cut:
            turn = result.answer_turns_cut[0]
            offset = 1 if item.system is not None else 0
            self.problem(raw, f"messages[{offset + 2 * turn + 1}].content",
                         f"answer would be cut: the sample needs {_tokens(result.total, self)} "
                         f"but cutoff_len is {options.cutoff_len}", "warning")
        if self.collect:
            self.report.records.append(SampleRecord(
                raw.index, item.prompt, tuple(sizes), result.image, result.total,
                bool(result.image_turns_cut), bool(result.answer_turns_cut)))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _also(indexes: list[int]) -> str:
    more = len(indexes) - 1
    return f" (also {_n(more, 'more sample')})" if more else ""


def _tokens(total: int, validator: _Validator) -> str:
    return f"{total} tokens" if validator.report.token_count == "exact" else f"about {total} tokens"


def _prompt_field(raw: RawSample) -> str:
    messages = raw.data["messages"]
    return "messages[1].content" if messages[0]["role"] == "system" else "messages[0].content"
