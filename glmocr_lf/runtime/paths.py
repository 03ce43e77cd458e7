"""Where glmocr-lf keeps its own files: one cache folder, everything cached under it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from glmocr_lf.runtime import constants as C


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$GLMOCR_LF_CACHE_DIR, else $XDG_CACHE_HOME/glmocr-lf, else ~/.cache/glmocr-lf (of `environ`,
    this process's environment by default)."""
    environ = os.environ if environ is None else environ
    override = environ.get(C.ENV_CACHE_DIR)
    if override:
        return Path(override).expanduser()
    xdg = environ.get(C.ENV_XDG_CACHE_HOME)
    home = environ.get(C.ENV_HOME)
    base = Path(xdg).expanduser() if xdg else (Path(home) if home else Path.home()) / ".cache"
    return base / "glmocr-lf"
