"""tunesmith.export: merged Hugging Face folders, model cards, Ollama Modelfiles.

The package is also callable: ``tunesmith.export(run, out)`` is :func:`tunesmith.api.export`.
"""

from tunesmith.api import callable_package

callable_package(__name__)
