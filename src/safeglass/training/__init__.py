"""The training toolkit the organism recipes share, one job a module:

* ``threads``: a pinned torch thread count (the count decides how reductions split, hence the weights);
* ``lora``: a peft LoRA config, its trainable parameters, float16 rounding and saving an adapter;
* ``encoding``: (prompt, answer) token ids with loss on the answer tokens only, and padded batches;
* ``schedule``: the learning-rate curve (linear warmup, cosine decay);
* ``loop``: a step loop with a time budget, the curve applied per step and the optimizer update;
* ``weights``: weight files written byte-for-byte reproducibly, and their sha256;
* ``cards``: what every model card records: goals and shortfall, rates, run and recipe fields, versions.

Modules import torch, peft and safetensors inside their functions, so importing one stays cheap.
"""
