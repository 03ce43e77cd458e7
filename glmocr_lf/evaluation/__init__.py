"""OCR evaluation: generate answers (`generate`), score them (`score`), compare two runs (`compare`)."""
