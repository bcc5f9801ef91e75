"""Plain-text role-prefix templates: DeepSeek LLM, Zephyr, Baichuan2, Vicuna, Alpaca, default."""

# ruff: noqa: E501  (jinja template lines are kept whole so they read like the templates they are)

from __future__ import annotations

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ALPACA_SYSTEM = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)

# DeepSeek LLM chat: "User: ...\n\nAssistant: ...<eos>"; a system message is plain text + blank line.
DEEPSEEK = r"""
{{- bos_token }}
{%- for message in messages %}
    {%- if message['role'] == 'user' %}
        {{- 'User: ' + message['content'] + '\n\n' }}
    {%- elif message['role'] == 'assistant' %}
        {{- 'Assistant: ' + message['content'] + eos_token }}
    {%- elif message['role'] == 'system' %}
        {{- message['content'] + '\n\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- 'Assistant:' }}
{%- endif %}
"""

ZEPHYR = r"""
{%- for message in messages %}
    {%- if message['role'] in ['system', 'user', 'assistant'] %}
        {{- '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}
    {%- endif %}
    {%- if loop.last and add_generation_prompt %}
        {{- '<|assistant|>\n' }}
    {%- endif %}
{%- endfor %}
"""

# Baichuan2 chat: a system prompt is raw text; <reserved_106>/<reserved_107> open user/assistant
# turns. Baichuan2's own fine-tuning trains eos after each reply, so the template writes it.
BAICHUAN2 = r"""
{%- for message in messages %}
    {%- if message['role'] == 'system' %}
        {{- message['content'] }}
    {%- elif message['role'] == 'user' %}
        {{- '<reserved_106>' + message['content'] }}
    {%- elif message['role'] == 'assistant' %}
        {{- '<reserved_107>' + message['content'] + eos_token }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<reserved_107>' }}
{%- endif %}
"""

# Vicuna v1.1 (FastChat "ADD_COLON_TWO"): "<system> USER: q ASSISTANT: a</s>USER: ...".
VICUNA = (
    r"""
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system = """
    + repr(VICUNA_SYSTEM)
    + r""" %}
    {%- set turns = messages %}
{%- endif %}
{{- system + ' ' }}
{%- for message in turns %}
    {%- if message['role'] == 'user' %}
        {{- 'USER: ' + message['content'] + ' ' }}
    {%- elif message['role'] == 'assistant' %}
        {{- 'ASSISTANT: ' + message['content'] + eos_token }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- 'ASSISTANT:' }}
{%- endif %}
"""
)

# Alpaca (Stanford prompt), continued turn by turn; blank lines separate the blocks and eos ends
# each response.
ALPACA = (
    r"""
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system = """
    + repr(ALPACA_SYSTEM)
    + r""" %}
    {%- set turns = messages %}
{%- endif %}
{{- system }}
{%- for message in turns %}
    {%- if message['role'] == 'user' %}
        {{- ('\n\n' if system or not loop.first else '') + '### Instruction:\n' + message['content'] + '\n\n' }}
    {%- elif message['role'] == 'assistant' %}
        {{- '### Response:\n' + message['content'] + eos_token }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '### Response:\n' }}
{%- endif %}
"""
)

# The fallback for base models: "Human: ...\nAssistant: ...<eos>", each turn on its own line.
DEFAULT = r"""
{%- for message in messages %}
    {%- set label = {'system': 'System', 'user': 'Human', 'assistant': 'Assistant', 'tool': 'Observation'}[message['role']] %}
    {{- ('' if loop.first else '\n') + label + ': ' + message['content'] }}
    {%- if message['role'] == 'assistant' %}
        {{- eos_token }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- ('\n' if messages else '') + 'Assistant:' }}
{%- endif %}
"""
