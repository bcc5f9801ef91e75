"""tunesmith.train.recipes."""
