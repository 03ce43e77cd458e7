"""The HTML report of `eval compare`: one self-contained file that works offline (images embedded,
the plot inline SVG, no script or style from elsewhere), rendered by jinja2 from
templates/report.html.j2 with autoescaping: every text of a sample reaches the page escaped.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmocr_lf.evaluation.compare import MIN_DELTA, SIGNIFICANCE, Comparison, Paired
from glmocr_lf.evaluation.score import format_value
from glmocr_lf.evaluation.scoretypes import METRIC_BY_NAME
from glmocr_lf.runtime.errors import EVAL_EXTRA_HINT, MissingDependencyError

THUMBNAIL_PX = 240  # longest side in the sample list
FULL_PX = 1600  # longest side when clicked: large enough to read, small enough to embed hundreds
TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Segment:
    """A run of characters of the A -> B diff: `equal`, `delete` (only in A) or `insert` (only in B)."""

    kind: str
    text: str


def char_diff(a: str, b: str) -> list[Segment]:
    """A -> B at character level, from rapidfuzz's Levenshtein opcodes (a replace is a delete then
    an insert)."""
    from rapidfuzz.distance import Levenshtein

    segments: list[Segment] = []
    for op in Levenshtein.opcodes(a, b):
        tag, a0, a1, b0, b1 = op.tag, op.src_start, op.src_end, op.dest_start, op.dest_end
        if tag == "equal":
            segments.append(Segment("equal", a[a0:a1]))
            continue
        if a1 > a0:
            segments.append(Segment("delete", a[a0:a1]))
        if b1 > b0:
            segments.append(Segment("insert", b[b0:b1]))
    return segments


def _image_uri(path: Path, longest: int) -> str | None:
    """The image as a data: URI (PNG), scaled down to `longest` pixels; None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            copy = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    except (OSError, ValueError):
        return None
    copy.thumbnail((longest, longest))
    buffer = io.BytesIO()
    copy.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def delta_histogram_svg(deltas: list[float]) -> str:
    """The distribution of per-sample quality deltas (B - A) as an inline <svg> element."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("matplotlib", "draw the HTML report's plot", EVAL_EXTRA_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "glmocr-lf", "font.size": 9}):
        figure, axes = plt.subplots(figsize=(6.4, 2.4))
        try:
            axes.hist(deltas, bins=40, range=(-1, 1), color="#4a78b5",
                      edgecolor="white")
            axes.axvline(0, color="#444", linewidth=0.8)
            axes.set_xlabel("quality B - A per sample (left: regressed, right: improved)")
            axes.set_ylabel("samples")
            figure.tight_layout()
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None})
        finally:
            plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog and doctype: the SVG goes inline


def _outcome(sample: Paired) -> str:
    return "regressed" if sample.delta < 0 else "improved" if sample.delta > 0 else "unchanged"


def _sample_view(sample: Paired) -> dict[str, Any]:
    images = [{"thumb": _image_uri(Path(p), THUMBNAIL_PX), "full": _image_uri(Path(p), FULL_PX), "name": Path(p).name}
              for p in sample.images]
    return {"id": sample.id, "task": sample.task, "outcome": _outcome(sample), "images": images,
            "quality_a": format_value(sample.quality_a), "quality_b": format_value(sample.quality_b),
            "delta": f"{sample.delta:+.4f}", "reference": sample.reference, "prediction_a": sample.prediction_a,
            "prediction_b": sample.prediction_b, "diff": char_diff(sample.prediction_a, sample.prediction_b)}


def _task_rows(comparison: Comparison) -> list[dict[str, str]]:
    return [{"task": d.task, "metric": d.metric,
             "arrow": "↑" if METRIC_BY_NAME[d.metric].higher_is_better else "↓",
             "a": format_value(d.a), "b": format_value(d.b),
             "delta": "-" if d.delta is None else f"{d.delta:+.4f}"} for d in comparison.deltas]


def render_html(comparison: Comparison) -> str:
    try:
        import jinja2
    except ImportError:
        raise MissingDependencyError("jinja2", "write the HTML report", EVAL_EXTRA_HINT) from None
    environment = jinja2.Environment(loader=jinja2.PackageLoader("glmocr_lf.evaluation", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True)
    c = comparison
    return environment.get_template(TEMPLATE).render(
        a=c.a.source, b=c.b.source, samples_a=len(c.a.samples), samples_b=len(c.b.samples),
        only_in_a=c.only_in_a, only_in_b=c.only_in_b, verdict=c.verdict, min_delta=MIN_DELTA,
        significance=SIGNIFICANCE, settings_differences=c.settings_differences, tasks=_task_rows(c),
        plot=delta_histogram_svg([p.delta for p in c.paired]),
        task_names=sorted({p.task for p in c.paired}), samples=[_sample_view(p) for p in c.paired])
