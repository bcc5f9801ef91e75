"""tunesmith.model."""
