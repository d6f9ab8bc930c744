"""greentui's pipeline: store, models, pruning, LoRA, evaluation, energy, runner and CLI.

Heavy libraries (torch, transformers, peft, torch_pruning, lm_eval, codecarbon) are imported inside
functions only, so ``backend.store`` and the CLI's argument parsing start fast and the Textual UI can
import the store without pulling torch in.
"""

__version__ = "0.1.0"
