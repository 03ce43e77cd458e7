"""The export YAML `llamafactory-cli export` reads, as a typed model: the train config's writer
(config/render.py) renders it, in LLaMA-Factory's `### model` ... order."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from glmocr_lf import __version__
from glmocr_lf.runtime import constants as C


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportModelSection(_Section):
    model_name_or_path: str = Field(description="the base model (LoRA) or the full fine-tune to save")
    adapter_name_or_path: str | None = Field(None, description="the LoRA run or checkpoint to merge")
    template: str = C.TEMPLATE
    trust_remote_code: bool = True
    image_max_pixels: int = Field(gt=0, description="the training resolution, kept by the exported processor")
    image_min_pixels: int = Field(gt=0)


class ExportMethodSection(_Section):
    finetuning_type: Literal["lora", "full"]


class ExportSection(_Section):
    export_dir: str = Field(description="where llamafactory-cli writes the model (staged, then moved)")
    export_size: int = Field(5, gt=0, description="GB per safetensors shard")
    export_device: Literal["cpu", "auto"] = "cpu"
    export_legacy_format: bool = False


class ExportConfig(_Section):
    model: ExportModelSection
    method: ExportMethodSection
    export: ExportSection

    def sectioned(self) -> dict[str, dict[str, Any]]:
        return {name: getattr(self, name).model_dump(exclude_none=True) for name in ("model", "method", "export")}

    def to_yaml(self) -> str:
        from glmocr_lf.config.render import Rendered, to_yaml

        return to_yaml(Rendered(self.sectioned()), comments=False, order=tuple(self.sectioned()),
                       header=f"Written by glmocr-lf {__version__}: llamafactory-cli export reads this file.")
