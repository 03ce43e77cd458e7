"""OmniDocBench's scoring rules: per region (`region`, `eval score --protocol omnidocbench`) and per
page (`pages`, `eval score --protocol omnidocbench --pages GT.json PRED_DIR`)."""

from glmocr_lf.evaluation.omnidocbench.region import (
    edit,
    normalize_formula,
    normalize_table,
    normalize_text,
    score_sample,
    summarize,
    teds,
)

__all__ = ["edit", "normalize_formula", "normalize_table", "normalize_text", "score_sample", "summarize", "teds"]
