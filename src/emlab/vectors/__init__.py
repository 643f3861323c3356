"""Persona and emotion vectors: see docs/personas-emotions.md."""
