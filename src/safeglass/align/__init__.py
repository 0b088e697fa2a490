"""The alignment durability audit: unlearning methods on a causal LM (``methods``, ``unlearn``), per-example
forgetting and its cheap proxies (``forgetting``), the equal-budget attack, persistence and relearning
(``attack``, ``persistence``), and the resumable audit behind ``safeglass align audit`` (``config``, ``audit``).

Modules import torch and peft inside their functions, so importing one stays cheap.
"""
