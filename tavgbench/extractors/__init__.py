"""tavgbench.extractors."""
