"""Vectors in activation space: directions and how they are extracted (mean difference, persona contrast),
LoRA interpretability, and persona and emotion vectors (docs/personas-emotions.md)."""
