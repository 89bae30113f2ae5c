"""Experiments beyond answer flips: `fidelity` (output fidelity of sparse attention along long texts)."""
