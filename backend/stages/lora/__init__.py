"""LoRA helpers used by ``backend.stages.finetune``."""
