"""`glmocr-lf init`: scaffold a fine-tuning project."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from glmocr_lf.cli import terminal

# Why the example's prompt is not an OCR one: it is the vendor's own fine-tuning sample.
EXAMPLE_TASK = ("The example is the GLM-OCR fine-tuning guide's own sample: chemical structure images to RDKit "
                "SMILES under the custom prompt 'Code Generation:' (so `data validate` warns that it is not one of "
                "the OCR prompts); your OCR data uses Text/Table/Formula Recognition:.")


@click.command("init", short_help="Scaffold a fine-tuning project.")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--example", is_flag=True,
              help="Also register the bundled 10-sample dataset in data/, split by image into "
                   "cosyn_chemical (8 samples, to train) and cosyn_chemical_val (2, to evaluate).")
@click.option("--force", is_flag=True,
              help="Write into a non-empty directory: only the scaffold's files; a file you changed is "
                   "kept and init's version written beside it as FILE.new; nothing is deleted.")
def init(directory: Path, example: bool, force: bool) -> None:
    """Create a project in DIRECTORY: LoRA and full configs, data/, a Makefile and a README."""
    from glmocr_lf.project.scaffold import scaffold

    result = scaffold(directory, example=example, force=force)
    for note in result.notes:
        terminal.note(note)
    terminal.console.print(file_tree(directory, result.written))
    for rel in result.kept:
        terminal.note(f"kept {directory / rel} (already there)")
    for rel in result.set_aside:
        terminal.warning(f"kept {directory / rel} (it differs from init's); init's version is "
                         f"{directory / rel}.new")
    if len(result.example) == 2:
        (train, train_samples), (val, val_samples) = result.example.items()
        terminal.info(f"Registered the example dataset {train} ({train_samples} samples) and its "
                      f"held-out split {val} ({val_samples} samples).")
        terminal.note(EXAMPLE_TASK)
    else:
        for name, samples in result.example.items():
            terminal.info(f"Registered the example dataset {name} ({samples} samples).")
    terminal.success(f"Wrote {len(result.written)} files to {directory}")
    here = Path(directory).resolve() == Path.cwd().resolve()
    terminal.info("Next: make help" if here else f"Next: cd {shlex.quote(str(directory))} && make help")


def file_tree(root: Path, paths: list[str]) -> Any:
    """A Rich tree of `paths` (relative, posix) under `root`: folders first, then files."""
    from rich.tree import Tree

    nested: dict[str, Any] = {}
    for path in paths:
        node = nested
        *folders, name = path.split("/")
        for folder in folders:
            node = node.setdefault(folder + "/", {})
        node[name] = None

    def add(tree: Tree, node: dict[str, Any]) -> None:
        for name in [n for n in node if node[n] is not None] + [n for n in node if node[n] is None]:
            child = tree.add(name.rstrip("/"), style="bold" if node[name] is not None else "")
            if node[name] is not None:
                add(child, node[name])

    tree = Tree(str(root), style="bold")
    add(tree, nested)
    return tree
