"""The CLIP robustness suite: backends over CLIP-style models, zero-shot classification, the typographic attack and
SCAM protocol on CLIP images, per-head typographic attention and Dyslexify's head ablation, and their config kind."""
