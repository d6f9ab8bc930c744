"""LoRA helpers used by ``backend.finetune``."""
