"""`glmocr-lf export`: merge a trained adapter (or re-save a full fine-tune) into a serve-ready model."""
