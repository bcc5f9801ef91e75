"""tunesmith.config."""
