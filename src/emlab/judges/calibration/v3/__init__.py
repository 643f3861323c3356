"""Fitted weights of offline judge v3 and its measured validation (leave-one-source-out, local judge, config sweep)."""
