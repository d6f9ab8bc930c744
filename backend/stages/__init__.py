"""The pipeline's stages, each usable alone: load a model, prune it (and plan the pruning from
config.json), LoRA recovery, lm-eval evaluation, perplexity, the efficiency sweep, the demo model.
Heavy libraries are imported inside functions."""
