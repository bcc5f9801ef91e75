"""Online RL pieces for ``recipes/grpo.py`` and ``recipes/rm.py`` (issue 19).

``advantages``: group-relative advantages; ``loss``: the clipped GRPO objective with its KL term;
``rewards``: rule, function, reward-model and endpoint rewards combined with weights;
``rollout``: completions from the one inference engine, with their token ids.
"""
