"""Scorers: replies scored against the sample's reference (its ``answer`` / ``answers`` / options), reported
like the judges' rates (``accuracy``, with intervals and paired deltas against the baseline defense and the
unattacked prompts). A run lists them under ``scorers:``; they are stored as judgments with measure
``accuracy``, and a sample without a reference is recorded as unscored, not as wrong."""
