"""The whole pipeline on the CPU with a tiny GLM-OCR, and the tiny model itself."""
