"""Vectors in activation space: directions and how they are extracted (mean difference, persona contrast), LoRA interpretability."""
