"""Calibration data and fitted weights for the offline judge (research material, see corpus.jsonl header)."""
