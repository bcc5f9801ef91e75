"""tunesmith: fine-tune open LLMs on your own data from one YAML file."""

__version__ = "0.1.0"
