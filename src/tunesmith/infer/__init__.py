"""tunesmith.infer."""
