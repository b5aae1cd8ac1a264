"""tavgbench.data."""
