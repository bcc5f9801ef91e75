"""Jinja chat-template strings behind the built-in template registry.

Each module holds the templates of a family group as plain strings; ``tunesmith.data.templates``
pairs them with their stop strings and defaults. Every string is a Hugging Face style chat template
(``messages``, ``add_generation_prompt``, ``bos_token``/``eos_token``, ``tools`` where the family
has tools) rendered with the same sandboxed jinja environment ``apply_chat_template`` uses, which
sets ``trim_blocks`` and ``lstrip_blocks``.
"""
