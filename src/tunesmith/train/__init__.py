"""tunesmith.train."""
