"""glmocr-lf: fine-tune GLM-OCR on LLaMA-Factory, from images and transcriptions to a served model."""

__version__ = "0.1.0"
