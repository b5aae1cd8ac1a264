"""Two-stage baselines: a text-to-video model followed by an audio model (see pipeline)."""
