"""Data engine: sources -> canonical types -> mix -> render -> pack."""
