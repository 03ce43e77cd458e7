"""glmocr-lf's start-up hook: swap GLM-OCR's kernels when transformers' GLM-OCR module is imported.

Python imports `sitecustomize` at start-up from the first folder on sys.path that has one; the
environment overlay of `glmocr-lf train --kernels` puts this folder first on PYTHONPATH, so every
process LLaMA-Factory starts (in-process, or torchrun's ranks, which inherit the environment) runs
this. Inert unless GLMOCR_LF_KERNELS is set. It patches nothing at start-up: it waits for
`transformers.models.glm_ocr.modeling_glm_ocr` to be imported and patches that module object
(glmocr_lf/kernels/glm_ocr.py); then it runs the sitecustomize this file shadows, if any.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from glmocr_lf.runtime.constants import ENV_KERNELS, ENV_LOCAL_RANK

_TARGET = "transformers.models.glm_ocr.modeling_glm_ocr"
_PIECES = os.environ.get(ENV_KERNELS, "")


def _patch(module: ModuleType) -> None:
    from glmocr_lf.kernels import parse_pieces
    from glmocr_lf.kernels.glm_ocr import apply

    done = apply(module, parse_pieces(_PIECES))
    if os.environ.get(ENV_LOCAL_RANK, "0") == "0":
        print(f"[glmocr-lf] kernels: swapped in {_TARGET}: {', '.join(done)}",
              file=sys.stderr, flush=True)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def _chain_next_sitecustomize() -> None:
    """Run the sitecustomize this file shadows (an image may set safety variables there).

    Only folders after this one on sys.path are searched, so two hooks that both chain never
    run each other in a loop.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    entries = [os.path.abspath(e) if e else "" for e in sys.path]
    start = entries.index(here) + 1 if here in entries else 0
    for entry in entries[start:]:
        if not entry or entry == here:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            with open(candidate) as fh:
                code = compile(fh.read(), candidate, "exec")
            scope: dict[str, Any] = {"__name__": "sitecustomize", "__file__": candidate}
            exec(code, scope)
            return


if _PIECES:
    if _TARGET in sys.modules:
        _patch(sys.modules[_TARGET])
    else:
        sys.meta_path.insert(0, _PatchOnImport())
_chain_next_sitecustomize()
