"""tunesmith.train: the training loop, losses, checkpoints and the recipes (``recipes/``).

The package is also callable: ``tunesmith.train(cfg)`` is :func:`tunesmith.api.train`.
"""

from tunesmith.api import callable_package

callable_package(__name__)
