"""Datasets: read, validate, stage and register GLM-OCR ShareGPT data for LLaMA-Factory."""
