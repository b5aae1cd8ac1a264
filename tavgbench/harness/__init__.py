"""Scoring orchestration: feature extraction through the per-clip cache, sharding, results."""
