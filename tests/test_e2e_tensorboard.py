"""End to end: `report_to: tensorboard` works out of the box (real llamafactory-cli, tiny GLM-OCR, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_e2e_train import CPU, glmocr, register, tiny  # noqa: F401  (tiny is a fixture)

pytestmark = pytest.mark.e2e
pytest.importorskip("llamafactory")
pytest.importorskip("tensorboard")


def test_three_steps_write_event_files_and_the_summary_names_them(tiny: Path) -> None:  # noqa: F811
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    register(Path("data"))
    glmocr("config", "new", "--method", "lora", "--model", str(tiny), "-o", "tb.yaml",
           "--set", "output_dir=tb", "--set", "report_to=tensorboard")
    run = glmocr("train", "tb.yaml", "max_steps=3", "save_steps=3", *CPU)
    line = next(line for line in run.stderr.splitlines() if line.startswith("  tensorboard:"))
    logdir = Path(line.split(":", 1)[1].strip().split(" (")[0])
    assert logdir.parent == Path("tb").resolve() / "runs"
    assert line.endswith(f"(1 event file; view: tensorboard --logdir {logdir})")
    record = json.loads(Path("tb/glmocr_lf_run.json").read_text())
    assert record["env"]["TENSORBOARD_LOGGING_DIR"] == str(logdir)
    assert "run_name: tb\n" in Path("tb/glmocr_lf_train.yaml").read_text()
    events = EventAccumulator(str(logdir))
    events.Reload()
    losses = [scalar.value for scalar in events.Scalars("train/loss")]
    assert len(losses) == 3
