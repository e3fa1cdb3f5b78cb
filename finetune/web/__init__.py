"""finetune.web."""
