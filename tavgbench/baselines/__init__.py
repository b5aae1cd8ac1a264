"""tavgbench.baselines."""
