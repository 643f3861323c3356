"""Data files of emlab.vectors (YAML): emotions with norms, stories, traits, pressure questions."""
