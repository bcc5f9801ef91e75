"""Teacher synthesis (``tunesmith data synth``): answer questions, rephrase samples N ways or
write QA pairs from documents through any OpenAI-compatible endpoint, cached and filtered, into
canonical conversation rows with provenance. See ``config`` (the YAML) and ``run`` (the run)."""
