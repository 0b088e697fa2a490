"""Continual learning under synthetic-image contamination: streams with hidden provenance, a class-conditional
generator, replay and regularisation strategies in plain torch, metrics, the failure-mode analysis and sweeps."""
