"""ChatML-style templates: plain ChatML, Qwen2.5, Qwen3 (thinking on/off), Yi, InternLM2, Phi-4."""

# ruff: noqa: E501  (jinja template lines are kept whole so they read like the templates they are)

from __future__ import annotations

CHATML = r"""
{%- for message in messages %}
    {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# The tool preamble Qwen2.5 and Qwen3 put in the system turn (Hermes-style <tool_call> JSON).
_QWEN_TOOLS_HEAD = (
    "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>"
)
_QWEN_TOOLS_TAIL = (
    "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments"
    " within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call>'
)

# Tool results: consecutive `tool` messages share one user turn, each wrapped in <tool_response>.
_QWEN_TOOL_RESULT = r"""
    {%- elif message['role'] == 'tool' %}
        {%- if loop.first or loop.previtem['role'] != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' ~ message['content'] ~ '\n</tool_response>' }}
        {%- if loop.last or loop.nextitem['role'] != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
"""

QWEN25 = (
    r"""
{%- if messages[0]['role'] == 'system' %}
    {%- set system_text = messages[0]['content'] %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system_text = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' %}
    {%- set turns = messages %}
{%- endif %}
{{- '<|im_start|>system\n' + system_text }}
{%- if tools %}
    {{- '\n\n"""
    + _QWEN_TOOLS_HEAD
    + r"""' }}
    {%- for tool in tools %}
        {{- '\n' + tool | tojson }}
    {%- endfor %}
    {{- '"""
    + _QWEN_TOOLS_TAIL
    + r"""' }}
{%- endif %}
{{- '<|im_end|>\n' }}
{%- for message in turns %}
    {%- if message['role'] == 'assistant' and message['tool_calls'] %}
        {{- '<|im_start|>assistant' }}
        {%- if message['content'] %}
            {{- '\n' + message['content'] }}
        {%- endif %}
        {%- for call in message['tool_calls'] %}
            {%- set fn = call['function'] if call['function'] is defined else call %}
            {{- '\n<tool_call>\n{"name": "' ~ fn['name'] ~ '", "arguments": ' ~ fn['arguments'] | tojson ~ '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}"""
    + _QWEN_TOOL_RESULT
    + r"""
    {%- elif message['role'] in ['user', 'system', 'assistant'] %}
        {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""
)

# Qwen3: reasoning is kept only for assistant turns after the last real user query; the final
# assistant turn always carries a (possibly empty) <think> block. `enable_thinking=false` pre-fills an
# empty think block in the generation prompt.
QWEN3 = (
    r"""
{%- set ns = namespace(last_query=messages | length - 1, seeking=true) %}
{%- for message in messages | reverse %}
    {%- if ns.seeking and message['role'] == 'user' and not (message['content'].startswith('<tool_response>') and message['content'].endswith('</tool_response>')) %}
        {%- set ns.seeking = false %}
        {%- set ns.last_query = messages | length - loop.index %}
    {%- endif %}
{%- endfor %}
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] + '\n\n' }}
    {%- endif %}
    {{- '"""
    + _QWEN_TOOLS_HEAD
    + r"""' }}
    {%- for tool in tools %}
        {{- '\n' + tool | tojson }}
    {%- endfor %}
    {{- '"""
    + _QWEN_TOOLS_TAIL
    + r"""<|im_end|>\n' }}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message['role'] == 'system' and loop.first %}
    {%- elif message['role'] in ['user', 'system'] %}
        {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
    {%- elif message['role'] == 'assistant' %}
        {%- set answer = message['content'] %}
        {%- set thought = '' %}
        {%- if message['reasoning_content'] is defined and message['reasoning_content'] is not none %}
            {%- set thought = message['reasoning_content'] %}
        {%- elif '</think>' in answer %}
            {%- set thought = answer.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set answer = answer.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query and (loop.last or thought) %}
            {{- '<|im_start|>assistant\n<think>\n' + thought.strip('\n') + '\n</think>\n\n' + answer.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>assistant\n' + answer }}
        {%- endif %}
        {%- for call in message['tool_calls'] or [] %}
            {%- if answer or not loop.first %}
                {{- '\n' }}
            {%- endif %}
            {%- set fn = call['function'] if call['function'] else call %}
            {%- set args = fn['arguments'] if fn['arguments'] is string else fn['arguments'] | tojson %}
            {{- '<tool_call>\n{"name": "' ~ fn['name'] ~ '", "arguments": ' ~ args ~ '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}"""
    + _QWEN_TOOL_RESULT
    + r"""
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
"""
)

# Same template with thinking off unless the caller passes enable_thinking=True.
QWEN3_NOTHINK = (
    r"""
{%- if enable_thinking is not defined %}
    {%- set enable_thinking = false %}
{%- endif %}"""
    + QWEN3
)

# Yi-1.5 (ChatML turns): a leading system message is written as bare text with no role markers,
# as upstream does; every user turn opens the assistant turn itself (no generation prompt).
YI = r"""
{%- if messages[0]['role'] == 'system' %}
    {{- messages[0]['content'] }}
{%- endif %}
{%- for message in messages %}
    {%- if message['role'] == 'user' %}
        {{- '<|im_start|>user\n' + message['content'] + '<|im_end|>\n<|im_start|>assistant\n' }}
    {%- elif message['role'] == 'assistant' %}
        {{- message['content'] + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
"""

INTERNLM2 = r"""
{{- bos_token }}
{%- for message in messages %}
    {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

PHI4 = r"""
{%- for message in messages %}
    {%- if message['role'] in ['system', 'user', 'assistant'] %}
        {{- '<|im_start|>' + message['role'] + '<|im_sep|>' + message['content'] + '<|im_end|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant<|im_sep|>' }}
{%- endif %}
"""
