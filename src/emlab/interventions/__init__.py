"""Interventions with directions on a model's activations: steering sweeps, ablation and weight orthogonalization."""
