"""`--help`, `config` and `data` never import torch, transformers or llamafactory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys
from click.testing import CliRunner
from glmocr_lf.cli import cli
args = sys.argv[1:]
result = CliRunner().invoke(cli, args)
heavy = sorted(m for m in ("torch", "transformers", "llamafactory", "datasets", "peft") if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
print("EXIT:" + str(result.exit_code))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["config", "--help"],
        ["config", "new", "--method", "lora"],
        ["config", "validate", "c.yaml"],
        ["config", "schema"],
        ["data", "--help"],
        ["eval", "--help"],
        ["train", "--help"],
        ["export", "--help"],
        ["init", "--help"],
        ["doctor", "--help"],
        ["smoke", "--help"],
    ],
)
def test_light_commands_do_not_import_the_stack(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("model_name_or_path: x\n")
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert "HEAVY:\n" in proc.stdout, proc.stdout + proc.stderr
    assert "EXIT:0" in proc.stdout, proc.stdout + proc.stderr


def test_python_dash_m_works(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "glmocr_lf", "--help"], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage: glmocr-lf [OPTIONS] COMMAND [ARGS]...")


def test_eval_without_the_eval_extra_is_one_error_line(tmp_path: Path) -> None:
    """A light install asked to score: one line naming the extra, not a traceback."""
    probe = ("import builtins, sys\n"
             "real = builtins.__import__\n"
             "def no_rapidfuzz(name, *args, **kwargs):\n"
             "    if name.startswith('rapidfuzz'):\n"
             "        raise ImportError(name=name)\n"
             "    return real(name, *args, **kwargs)\n"
             "builtins.__import__ = no_rapidfuzz\n"
             "from glmocr_lf.cli import main\n"
             "sys.argv = ['glmocr-lf', 'eval', 'score', 'p.jsonl']\n"
             "main()\n")
    (tmp_path / "p.jsonl").write_text('{"reference": "a", "prediction": "a"}\n')
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "Error: rapidfuzz is required to score OCR output but is not installed",
        "Hint: install the eval extra: pip install 'glmocr-lf[eval]' (`make install` has it)",
    ]
