"""`glmocr-lf init`: the project scaffold, its golden files, and its Makefile's command lines."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import SAMPLE_JSON, Invoke

from glmocr_lf.cli import cli
from glmocr_lf.config import load_config, preset, render_config
from glmocr_lf.data.registry import sharegpt_entry
from glmocr_lf.project.scaffold import template_files
from glmocr_lf.runtime.resources import templates_dir
from glmocr_lf.runtime.versions import Stack

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "init"
REGEN = bool(os.environ.get("GLMOCR_LF_REGEN_GOLDEN"))
TEMPLATE_FILES = ["Makefile", "README.md", "configs/full.yaml", "configs/lora.yaml", "data/dataset_info.json",
                  "slurm/train.sbatch"]
PLAIN_TREE = [
    "project",
    "├── configs",
    "│   ├── full.yaml",
    "│   └── lora.yaml",
    "├── data",
    "│   └── dataset_info.json",
    "├── slurm",
    "│   └── train.sbatch",
    "├── Makefile",
    "└── README.md",
    "Wrote 6 files to project",
    "Next: cd project && make help",
]


def init(*args: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(cli, ["init", *args], catch_exceptions=False)
    return result.exit_code, result.stderr.splitlines(), result.stdout


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and
                  not p.name.startswith("."))


def check_golden(name: str, text: str) -> None:
    golden = GOLDEN / name
    if REGEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden} differs; `make golden` rewrites it"


def test_init_writes_the_scaffold_and_prints_its_tree(tmp_path: Path) -> None:
    code, lines, stdout = init("project")
    assert code == 0
    assert lines == PLAIN_TREE
    assert stdout == ""
    project = tmp_path / "project"
    assert files_under(project) == TEMPLATE_FILES
    assert (project / "data" / "dataset_info.json").read_text() == "{}\n"
    templates = templates_dir()
    stack = Stack.detect()
    for name in ("lora", "full"):
        # re-rendered for the installed versions, from the template's values
        expected = render_config(load_config(templates / "configs" / f"{name}.yaml"), stack)[0]
        assert (project / "configs" / f"{name}.yaml").read_text() == expected
    for name in ("Makefile", "README.md", "slurm/train.sbatch"):
        assert (project / name).read_bytes() == (templates / name).read_bytes()


def test_init_into_an_existing_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    code, lines, _ = init("project")
    assert code == 0
    assert lines == PLAIN_TREE


@pytest.mark.parametrize("method", ["lora", "full"])
def test_template_configs_golden_are_the_rendered_presets(method: str) -> None:
    text, notes = render_config(preset(method, dataset="cosyn_chemical"), Stack.pinned())  # type: ignore[arg-type]
    template = REPO / "templates" / "configs" / f"{method}.yaml"
    if REGEN:
        template.write_text(text)
    assert notes == []
    assert template.read_text() == text


def test_templates_hold_only_what_init_writes() -> None:
    assert template_files(REPO / "templates") == TEMPLATE_FILES


def test_init_example_golden_tree_and_makefile(tmp_path: Path) -> None:
    code, lines, _ = init("project", "--example")
    assert code == 0, lines
    project = tmp_path / "project"
    # a registration's version folder is named by the digest of what it stages (absolute paths included)
    tree = re.sub(r"/v[0-9a-f]{12}/", "/vDIGEST/", "\n".join(files_under(project)) + "\n")
    check_golden("tree.txt", tree)
    check_golden("Makefile", (project / "Makefile").read_text())
    assert lines[:6] == ["project", "├── configs", "│   ├── full.yaml", "│   └── lora.yaml", "├── data",
                         "│   ├── cosyn_chemical"]
    assert lines[-4:] == ["Registered the example dataset cosyn_chemical (8 samples) and its held-out split "
                          "cosyn_chemical_val (2 samples).",
                          "The example is the GLM-OCR fine-tuning guide's own sample: chemical structure images to "
                          "RDKit SMILES under the custom prompt 'Code Generation:' (so `data validate` warns that it "
                          "is not one of the OCR prompts); your OCR data uses Text/Table/Formula Recognition:.",
                          "Wrote 18 files to project", "Next: cd project && make help"]


def test_init_example_validates_and_registers_the_sample(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert init("project", "--example")[0] == 0
    project = tmp_path / "project"
    monkeypatch.chdir(project)
    runner = CliRunner()
    result = runner.invoke(cli, ["config", "validate", "configs/full.yaml", "configs/lora.yaml"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("OK")] == \
        ["OK: configs/full.yaml", "OK: configs/lora.yaml"]
    info = json.loads((project / "data" / "dataset_info.json").read_text())
    assert info == {"cosyn_chemical": sharegpt_entry("cosyn_chemical.json"),
                    "cosyn_chemical_val": sharegpt_entry("cosyn_chemical_val.json")}
    images: dict[str, set[str]] = {}
    for name, count in (("cosyn_chemical", 8), ("cosyn_chemical_val", 2)):
        samples = json.loads((project / "data" / f"{name}.json").read_text())
        assert len(samples) == count, name
        images[name] = set()
        for sample in samples:  # every image resolves from data/, LLaMA-Factory's media_dir, as a real file
            (image,) = sample["images"]
            path = project / "data" / image
            assert path.is_file() and not path.is_symlink(), image
            folder, version, bundled = image.split("/", 2)
            assert folder == name and re.fullmatch(r"v[0-9a-f]{12}", version), image
            assert path.read_bytes() == (SAMPLE_JSON.parent / bundled).read_bytes()
            images[name].add(bundled)
        result = runner.invoke(cli, ["data", "validate", f"data/{name}.json", "--config", "configs/lora.yaml"],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
    # split by image with seed 0: the same two held out every time, none of them trained on
    assert images["cosyn_chemical_val"] == {"cosyn_chemical/7.png", "cosyn_chemical/8.png"}
    assert images["cosyn_chemical"].isdisjoint(images["cosyn_chemical_val"])
    assert images["cosyn_chemical"] | images["cosyn_chemical_val"] == \
        {f"cosyn_chemical/{n}.png" for n in range(1, 11)}


def test_a_non_empty_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("mine")
    code, lines, _ = init("project")
    assert code == 1
    assert lines == [
        "Error: project: directory is not empty",
        "Hint: pass --force to write the scaffold's files into it (a file you changed is kept and init's version "
        "written beside it as FILE.new; nothing is deleted)",
    ]
    assert files_under(tmp_path / "project") == ["notes.txt"]


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "project").write_text("")
    code, lines, _ = init("project", "--force")
    assert code == 1
    assert lines == ["Error: project: is a file, expected a directory"]


def test_force_writes_only_the_scaffold_and_keeps_registrations(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "notes.txt").write_text("mine")
    (project / "Makefile").write_text("old\n")
    (project / "README.md").write_bytes((templates_dir() / "README.md").read_bytes())  # as init writes it
    mine = {"my_ocr": sharegpt_entry("my_ocr.json")}
    (project / "data" / "dataset_info.json").write_text(json.dumps(mine))
    code, lines, _ = init("project", "--force")
    assert code == 0
    assert lines == [
        "project",
        "├── configs",
        "│   ├── full.yaml",
        "│   └── lora.yaml",
        "├── slurm",
        "│   └── train.sbatch",
        "├── Makefile.new",
        "└── README.md",
        "kept project/data/dataset_info.json (already there)",
        "Warning: kept project/Makefile (it differs from init's); init's version is project/Makefile.new",
        "Wrote 5 files to project",
        "Next: cd project && make help",
    ]
    assert (project / "notes.txt").read_text() == "mine"
    assert (project / "Makefile").read_text() == "old\n"
    assert (project / "Makefile.new").read_bytes() == (templates_dir() / "Makefile").read_bytes()
    assert json.loads((project / "data" / "dataset_info.json").read_text()) == mine

    code, lines, _ = init("project", "--force", "--example")
    assert code == 0
    info = json.loads((project / "data" / "dataset_info.json").read_text())
    assert info == {**mine, "cosyn_chemical": sharegpt_entry("cosyn_chemical.json"),
                    "cosyn_chemical_val": sharegpt_entry("cosyn_chemical_val.json")}
    assert (project / "notes.txt").read_text() == "mine"
    assert "│   └── dataset_info.json" in lines


MAKE = shutil.which("make")


def make_n(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`make -n ARGS` in PROJECT, with this environment's glmocr-lf first on PATH (the Makefile asks
    it for the config's model and dataset)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run([MAKE, "-n", "--no-print-directory", "-C", str(project), *args],  # type: ignore[list-item]
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "MAKEFLAGS": "", "PATH": path})


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_makefile_follows_the_config(tmp_path: Path) -> None:
    assert init("project")[0] == 0
    config = tmp_path / "project" / "configs" / "lora.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("model_name_or_path: zai-org/GLM-OCR", "model_name_or_path: my/base")
                      .replace("dataset: cosyn_chemical", "dataset: mine,more"), encoding="utf-8")
    proc = make_n(tmp_path / "project", "eval-base", "validate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "glmocr-lf eval run --model my/base --dataset mine,more_val --data-dir data --out evals/base --settings-from "
        "saves/glm-ocr/lora/sft/merged",
        "glmocr-lf config validate configs/lora.yaml configs/full.yaml",
        "glmocr-lf data validate mine --data-dir data --config configs/lora.yaml",
        "glmocr-lf data validate more --data-dir data --config configs/lora.yaml",
    ]
EVAL_LINES = [
    "glmocr-lf eval run --model zai-org/GLM-OCR --dataset cosyn_chemical_val --data-dir data --out evals/base "
    "--settings-from saves/glm-ocr/lora/sft/merged",
    "glmocr-lf eval run --model saves/glm-ocr/lora/sft/merged --dataset cosyn_chemical_val --data-dir data "
    "--out evals/finetuned",
    "glmocr-lf eval compare evals/base/predictions.jsonl evals/finetuned/predictions.jsonl --out evals/report.md",
]


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
@pytest.mark.parametrize(("args", "expected"), [
    (["train-lora", "GPUS=0,1", "NPROC=2"], ["glmocr-lf train configs/lora.yaml --gpus 0,1 --nproc 2"]),
    (["train-lora"], ["glmocr-lf train configs/lora.yaml"]),
    (["train-full", "DEEPSPEED=z3", "NNODES=2", "NODE_RANK=1", "MASTER_ADDR=10.0.0.1", "MASTER_PORT=29500",
      "ARGS=--fresh num_train_epochs=1"],
     ["glmocr-lf train configs/full.yaml --nnodes 2 --node-rank 1 --master-addr 10.0.0.1 --master-port 29500 "
      "--deepspeed z3 --fresh num_train_epochs=1"]),
    (["train-lora", "CONFIG=configs/mine.yaml", "DEEPSPEED="], ["glmocr-lf train configs/mine.yaml"]),
    (["validate"], ["glmocr-lf config validate configs/lora.yaml configs/full.yaml",
                    "glmocr-lf data validate cosyn_chemical --data-dir data --config configs/lora.yaml"]),
    (["validate", "DATASET=a,b"], ["glmocr-lf config validate configs/lora.yaml configs/full.yaml",
                                   "glmocr-lf data validate a --data-dir data --config configs/lora.yaml",
                                   "glmocr-lf data validate b --data-dir data --config configs/lora.yaml"]),
    (["export", "EXPORT_ARGS=--force -v"],
     ["glmocr-lf export --adapter saves/glm-ocr/lora/sft --out saves/glm-ocr/lora/sft/merged --force -v"]),
    (["eval-base", "EVAL_ARGS=--max-new-tokens 64"],
     ["glmocr-lf eval run --model zai-org/GLM-OCR --dataset cosyn_chemical_val --data-dir data --out evals/base "
      "--settings-from saves/glm-ocr/lora/sft/merged --max-new-tokens 64"]),
    (["export"], ["glmocr-lf export --adapter saves/glm-ocr/lora/sft --out saves/glm-ocr/lora/sft/merged"]),
    (["export-full"], ["glmocr-lf export --model saves/glm-ocr/full/sft"]),
    (["smoke"], ["glmocr-lf smoke"]),
    (["train-slurm"], ["sbatch slurm/train.sbatch configs/full.yaml"]),
    (["train-slurm", "NNODES=4", "CONFIG=configs/lora.yaml", "DEEPSPEED=z2", "MASTER_PORT=29600", "ARGS=--resume"],
     ["MASTER_PORT=29600 sbatch --nodes=4 slurm/train.sbatch configs/lora.yaml --deepspeed z2 --resume"]),
    (["tensorboard"], ["tensorboard --logdir saves"]),
    (["tensorboard", "LOGDIR=saves/glm-ocr/lora/sft"], ["tensorboard --logdir saves/glm-ocr/lora/sft"]),
    (["eval"], EVAL_LINES),
    (["-j4", "eval"], EVAL_LINES),  # one recipe: compare never runs before both evals
    (["eval", "DATASET=my_ocr", "MODEL=saves/mine"],
     ["glmocr-lf eval run --model zai-org/GLM-OCR --dataset my_ocr_val --data-dir data --out evals/base "
      "--settings-from saves/mine",
      "glmocr-lf eval run --model saves/mine --dataset my_ocr_val --data-dir data --out evals/finetuned",
      EVAL_LINES[2]]),
    (["eval-finetuned"], EVAL_LINES[1:2]),
    (["eval", "EVAL_PAGES=odb/gt.json", "EVAL_IMAGES=odb/images", "PAGES_ARGS=--max-pages 5"], [
        *EVAL_LINES,
        "glmocr-lf eval run --model zai-org/GLM-OCR --pages odb/gt.json --images odb/images --out evals/base-pages "
        "--max-pages 5",
        "glmocr-lf eval run --model saves/glm-ocr/lora/sft/merged --pages odb/gt.json --images odb/images "
        "--out evals/finetuned-pages --max-pages 5",
        "glmocr-lf eval compare evals/base-pages/page_scores.json evals/finetuned-pages/page_scores.json "
        "--out evals/report-pages.md"]),
    (["eval-base", "EVAL_DATASET=my_test"], ["glmocr-lf eval run --model zai-org/GLM-OCR --dataset my_test "
                                             "--data-dir data --out evals/base --settings-from "
                                             "saves/glm-ocr/lora/sft/merged"]),
    (["compare"], ["glmocr-lf eval compare evals/base/predictions.jsonl evals/finetuned/predictions.jsonl "
                   "--out evals/report.md"]),
])
def test_makefile_command_lines(tmp_path: Path, args: list[str], expected: list[str]) -> None:
    assert init("project")[0] == 0
    proc = make_n(tmp_path / "project", *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_makefile_help_lists_every_target_and_variable(tmp_path: Path) -> None:
    assert init("project")[0] == 0
    proc = subprocess.run([MAKE, "--no-print-directory", "-C", str(tmp_path / "project"), "help"],
                          capture_output=True, text=True, check=False, env={**os.environ, "MAKEFLAGS": ""})
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert names == ["help", "validate", "train-lora", "train-full", "train-slurm", "tensorboard", "export",
                     "export-full", "smoke", "eval", "eval-base", "eval-finetuned", "compare", "GLMOCR_LF", "CONFIG",
                     "GPUS", "NPROC", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "DEEPSPEED", "ARGS", "EXPORT_ARGS",
                     "EVAL_ARGS", "EVAL_PAGES", "EVAL_IMAGES", "PAGES_ARGS", "DATASET", "ADAPTER", "FULL_RUN", "MERGED", "MODEL", "BASE", "EVAL_DATASET", "LOGDIR", "SBATCH"]


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_make_validate_in_a_project_without_example_once_a_dataset_is_registered(tmp_path: Path) -> None:
    from helpers import SAMPLE_JSON, invoke

    assert init("project")[0] == 0
    os.chdir(tmp_path / "project")
    assert invoke("data", "register", "mine", str(SAMPLE_JSON)).exit_code == 0
    for name in ("lora.yaml", "full.yaml"):
        config = Path("configs") / name
        config.write_text(config.read_text(encoding="utf-8").replace("dataset: cosyn_chemical", "dataset: mine"),
                          encoding="utf-8")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run([MAKE, "--no-print-directory", "validate"], capture_output=True, text=True,  # type: ignore[list-item]
                          check=False, env={**os.environ, "MAKEFLAGS": "", "PATH": path})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "glmocr-lf data validate mine --data-dir data --config configs/lora.yaml" in proc.stdout.splitlines()


def test_force_never_overwrites_an_edited_file(tmp_path: Path) -> None:
    assert init("project", "--example")[0] == 0
    project = tmp_path / "project"
    lora = project / "configs" / "lora.yaml"
    edited = lora.read_text().replace("learning_rate:", "# mine\nlearning_rate:")
    lora.write_text(edited)
    staged = project / "data" / "cosyn_chemical.json"
    staged.write_text(staged.read_text() + "\n")  # edited: other content
    code, lines, _ = init("project", "--force", "--example")
    assert code == 0, lines
    assert lora.read_text() == edited
    assert (project / "configs" / "lora.yaml.new").read_text() != edited
    assert "Warning: kept project/configs/lora.yaml (it differs from init's); init's version is " \
           "project/configs/lora.yaml.new" in lines
    assert "kept project/data/cosyn_chemical.json (already there)" in lines
    assert staged.read_text().endswith("]\n\n")


def test_init_force_in_the_current_folder_says_the_next_step_without_cd(invoke: Invoke) -> None:
    result = invoke("init", "--force", ".")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "Next: make help"


def test_smoke_model_prints_only_its_own_line(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    proc = subprocess.run([sys.executable, "-m", "glmocr_lf", "smoke-model", "tiny"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == "Tiny GLM-OCR written to tiny\n"  # no HF progress bars
