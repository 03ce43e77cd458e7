"""Typed GLM-OCR training configs: models, rules, presets, rendering."""

from glmocr_lf.config.load import from_flat, load_config, parse_overrides
from glmocr_lf.config.models import TrainConfig
from glmocr_lf.config.presets import METHODS, preset
from glmocr_lf.config.render import render_config

__all__ = ["METHODS", "TrainConfig", "from_flat", "load_config", "parse_overrides", "preset", "render_config"]
