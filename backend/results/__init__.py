"""Reading results back: the study's tables and their exports, energy reports, imported lm-eval
files and reference tables, and how figures are written."""
