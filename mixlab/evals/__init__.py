"""Evaluation of checkpoints: held-out loss and bits-per-byte per domain."""
