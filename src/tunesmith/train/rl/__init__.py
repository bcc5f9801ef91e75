"""Online RL pieces for ``recipes/grpo.py`` and ``recipes/rm.py`` (issue 19).

``prompts``: prompt datasets; ``rollout``: completions from the one inference engine, with their
token ids; ``rewards``: rule and function rewards combined with weights, ``reward_model`` (also
stage rm's scalar head, loss and saving) and ``endpoint`` (an OpenAI-compatible grader);
``advantages``: group-relative advantages; ``loss``: the clipped GRPO objective with its KL term;
``step``: one GRPO optimiser step; ``warmup``: the optional SFT warm-up; ``plots``: rewards.png.
"""
