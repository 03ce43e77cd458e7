"""Compare two predictions files (A = baseline, B = candidate): per-task metric deltas, a verdict,
and the samples that regressed most.

Verdict rule, on the samples both files share (paired by id): B is *better* when its mean `quality`
(see score.py) is at least MIN_DELTA higher and a two-sided sign test over the samples that changed
gives p < SIGNIFICANCE; *worse* symmetrically; otherwise *no clear change*. Fewer than 6 changed
samples can never reach p < 0.05, so tiny sets always say "no clear change".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from glmocr_lf.evaluation.predictions import Prediction, read_predictions
from glmocr_lf.evaluation.score import format_value, metric_columns, score_predictions
from glmocr_lf.evaluation.scoretypes import METRIC_BY_NAME, Scores
from glmocr_lf.runtime.errors import DataError, GlmocrLfError

MIN_DELTA = 0.01
SIGNIFICANCE = 0.05
DEFAULT_TOP = 10
# Markdown shows this much of each answer; the JSON report has them whole.
MARKDOWN_ANSWER_CHARS = 1000

Outcome = Literal["better", "worse", "no clear change"]


@dataclass(frozen=True)
class Delta:
    task: str
    metric: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    paired: int
    improved: int
    regressed: int
    mean_delta: float
    p_value: float

    @property
    def line(self) -> str:
        head = {"better": "B is better than A", "worse": "B is worse than A",
                "no clear change": "no clear change"}[self.outcome]
        return (f"Verdict: {head}: quality {self.mean_delta:+.4f} over {self.paired} paired samples "
                f"({self.improved} improved, {self.regressed} regressed, "
                f"sign test p={self.p_value:.4f})")


@dataclass(frozen=True)
class Paired:
    """One sample both files hold: both answers and their quality."""

    id: str
    task: str
    quality_a: float
    quality_b: float
    reference: str
    prediction_a: str
    prediction_b: str
    images: tuple[str, ...]

    @property
    def delta(self) -> float:
        return self.quality_b - self.quality_a


@dataclass(frozen=True)
class Comparison:
    a: Scores
    b: Scores
    deltas: list[Delta]
    verdict: Verdict
    regressions: list[Paired]  # the --top most regressed
    only_in_a: int
    only_in_b: int
    paired: list[Paired] = field(default_factory=list)  # worst regression first
    # settings that differ between the runs' records, when compared anyway (--allow-different-settings)
    settings_differences: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def num(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        return {
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "deltas": [{"task": d.task, "metric": d.metric, "a": num(d.a), "b": num(d.b),
                        "delta": num(d.delta)} for d in self.deltas],
            "verdict": {"outcome": self.verdict.outcome, "paired": self.verdict.paired,
                        "improved": self.verdict.improved, "regressed": self.verdict.regressed,
                        "mean_quality_delta": num(self.verdict.mean_delta),
                        "p_value": num(self.verdict.p_value), "line": self.verdict.line},
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
            "regressions": [{"id": r.id, "task": r.task, "quality_a": num(r.quality_a),
                             "quality_b": num(r.quality_b), "reference": r.reference,
                             "prediction_a": r.prediction_a, "prediction_b": r.prediction_b}
                            for r in self.regressions],
            **({"settings_differences": self.settings_differences} if self.settings_differences else {}),
        }


def sign_test(improved: int, regressed: int) -> float:
    """Two-sided exact binomial (p = 1/2) test on the number of improved vs regressed samples."""
    n = improved + regressed
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(improved, regressed) + 1))
    return min(1.0, 2 * tail / float(2**n))


def decide(quality_deltas: Sequence[float]) -> Verdict:
    improved = sum(1 for d in quality_deltas if d > 0)
    regressed = sum(1 for d in quality_deltas if d < 0)
    mean = sum(quality_deltas) / len(quality_deltas) if quality_deltas else 0.0
    p_value = sign_test(improved, regressed)
    outcome: Outcome = "no clear change"
    if p_value < SIGNIFICANCE and mean >= MIN_DELTA:
        outcome = "better"
    elif p_value < SIGNIFICANCE and mean <= -MIN_DELTA:
        outcome = "worse"
    return Verdict(outcome, len(quality_deltas), improved, regressed, mean, p_value)


def compare_predictions(a: Sequence[Prediction], b: Sequence[Prediction], *, source_a: str = "A",
                        source_b: str = "B", top: int = DEFAULT_TOP) -> Comparison:
    scores_a = score_predictions(a, source_a)
    scores_b = score_predictions(b, source_b)
    deltas = []
    for task in dict.fromkeys([t.task for t in scores_a.tasks] + [t.task for t in scores_b.tasks]):
        task_a, task_b = scores_a.task(task), scores_b.task(task)
        for name in metric_columns(scores_a, scores_b):
            value_a = task_a.metrics.get(name) if task_a else None
            value_b = task_b.metrics.get(name) if task_b else None
            if value_a is not None or value_b is not None:
                deltas.append(Delta(task, name, value_a, value_b))

    by_id_b = {s.id: (s, p) for s, p in zip(scores_b.samples, b, strict=True)}
    pairs = []
    for sample_a, pred_a in zip(scores_a.samples, a, strict=True):
        if sample_a.id not in by_id_b:
            continue
        sample_b, pred_b = by_id_b[sample_a.id]
        if pred_a.reference != pred_b.reference:
            raise DataError(f"sample {sample_a.id!r} has different references in {source_a} and "
                            f"{source_b}: compare predictions made on the same dataset")
        pairs.append((sample_a, sample_b, pred_a, pred_b))
    if not pairs:
        raise DataError(f"{source_a} and {source_b} share no sample ids: compare predictions made "
                        "on the same dataset")
    verdict = decide([sb.quality - sa.quality for sa, sb, _, _ in pairs])
    paired = sorted((Paired(sa.id, sa.task, sa.quality, sb.quality, pa.reference, pa.prediction, pb.prediction,
                            pa.images or pb.images) for sa, sb, pa, pb in pairs),
                    key=lambda p: (p.delta, p.id))
    regressions = [p for p in paired if p.delta < 0][:top]
    return Comparison(scores_a, scores_b, deltas, verdict, regressions,
                      only_in_a=len(a) - len(pairs), only_in_b=len(b) - len(pairs), paired=paired)


@dataclass(frozen=True)
class SettingsCheck:
    differences: list[str]  # one line per score-affecting setting that differs
    unchecked: list[str]  # the files no eval_run.json stands beside (settings unknown)


def check_settings(path_a: Path, path_b: Path) -> SettingsCheck:
    """Compare the settings `eval run` recorded beside each predictions file."""
    from glmocr_lf.evaluation.outputs import PREDICTIONS_FILE
    from glmocr_lf.evaluation.settings import differences
    from glmocr_lf.runtime.records import read_eval_record

    # eval run writes predictions.jsonl beside its record; any other file is not the one it describes
    records = [read_eval_record(Path(path).parent) if Path(path).name == PREDICTIONS_FILE else None
               for path in (path_a, path_b)]
    unchecked = [str(path) for path, record in zip((path_a, path_b), records, strict=True) if record is None]
    if records[0] is None or records[1] is None:
        return SettingsCheck([], unchecked)
    return SettingsCheck(differences(records[0].settings, records[1].settings), [])


def compare_files(path_a: Path, path_b: Path, *, top: int = DEFAULT_TOP,
                  allow_different_settings: bool = False) -> tuple[Comparison, SettingsCheck]:
    """Compare two runs' predictions; refuse runs scored with different settings unless allowed
    (their differences then head every report)."""
    check = check_settings(path_a, path_b)
    if check.differences and not allow_different_settings:
        raise GlmocrLfError(f"{path_a} and {path_b} were made with different settings: a verdict would "
                            "not be fair\n" + "\n".join(f"  {line}" for line in check.differences),
                            hint="run both with the same settings (`eval run --settings-from MODEL` takes "
                                 "a fine-tune's image limits), or pass --allow-different-settings")
    comparison = compare_predictions(read_predictions(path_a), read_predictions(path_b),
                                     source_a=str(path_a), source_b=str(path_b), top=top)
    return replace(comparison, settings_differences=check.differences), check


# --------------------------------------------------------------------------------------------------
# Markdown


def _fenced(text: str) -> str:
    if len(text) > MARKDOWN_ANSWER_CHARS:
        text = text[:MARKDOWN_ANSWER_CHARS] + " [...]"
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _format_delta(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def render_markdown(comparison: Comparison) -> str:
    c = comparison
    lines = ["# Evaluation report", "",
             f"- A: `{c.a.source}` ({len(c.a.samples)} samples)",
             f"- B: `{c.b.source}` ({len(c.b.samples)} samples)"]
    if c.only_in_a or c.only_in_b:
        lines.append(f"- unpaired: {c.only_in_a} only in A, {c.only_in_b} only in B "
                     "(task metrics use every sample of each file; the verdict only paired ones)")
    if c.settings_differences:
        lines += ["", "**Compared anyway, with different settings (--allow-different-settings):**", "",
                  *(f"- {line}" for line in c.settings_differences)]
    lines += ["", f"**{c.verdict.line}**", "",
              f"Rule: B is better (worse) when mean quality rises (falls) by at least {MIN_DELTA} "
              f"and a sign test over changed samples gives p < {SIGNIFICANCE}.", "",
              "## Per task", "", "| task | metric | A | B | B - A |", "|---|---|---:|---:|---:|"]
    for d in c.deltas:
        arrow = "↑" if METRIC_BY_NAME[d.metric].higher_is_better else "↓"
        task = d.task.replace("|", "\\|")
        lines.append(f"| {task} | {d.metric} {arrow} | {format_value(d.a)} | {format_value(d.b)} "
                     f"| {_format_delta(d.delta)} |")
    lines += ["", "↑ higher is better, ↓ lower is better.", "",
              f"## Most regressed samples ({len(c.regressions)})", ""]
    if not c.regressions:
        lines += ["No sample regressed." if not c.verdict.regressed else "None listed (--top 0).", ""]
    for rank, r in enumerate(c.regressions, start=1):
        lines += [f"### {rank}. `{r.id}` ({r.task}): quality {format_value(r.quality_a)} -> "
                  f"{format_value(r.quality_b)}", "",
                  "Reference:", "", _fenced(r.reference), "",
                  "A:", "", _fenced(r.prediction_a), "",
                  "B:", "", _fenced(r.prediction_b), ""]
    return "\n".join(lines)
