"""Pieces of ``backend.stages.prune``: calibration data and gradients, the GQA-aware head step, the MLP step
(torch-pruning), ShortGPT layer drop, and parameter/FLOP accounting."""
