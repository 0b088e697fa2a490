"""Adversarial robustness of a learned control policy: CSI-manipulation attacks (FGGM, white-box PGD, greedy,
random) on a deep-RL MU-MIMO scheduler, with IBP / CROWN bounds over its observation normaliser's box (docs/rl.md)."""
