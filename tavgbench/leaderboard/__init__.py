"""tavgbench.leaderboard."""
