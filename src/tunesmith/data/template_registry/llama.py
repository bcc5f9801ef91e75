"""Llama 2, Llama 3, Llama 3.1 (with tools) and Mistral [INST] templates (v0.1/v0.2 and v0.3)."""

# ruff: noqa: E501  (jinja template lines are kept whole so they read like the templates they are)

from __future__ import annotations

LLAMA2 = r"""
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system = none %}
    {%- set turns = messages %}
{%- endif %}
{%- for message in turns %}
    {%- if (message['role'] == 'user') != (loop.index0 is even) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- set text = message['content'] %}
    {%- if loop.first and system is not none %}
        {%- set text = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + text %}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {{- bos_token + '[INST] ' + text | trim + ' [/INST]' }}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + text | trim + ' ' + eos_token }}
    {%- endif %}
{%- endfor %}
"""

LLAMA3 = r"""
{%- for message in messages %}
    {%- if loop.first %}
        {{- bos_token }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# Llama 3.1: the system header always carries the knowledge cut-off and a date (a fixed default
# unless `date_string` is passed). Custom tools go into the first user turn by default
# (`tools_in_user_message`); `builtin_tools` switches on ipython mode (<|python_tag|>, <|eom_id|>).
# Tool results are JSON-encoded, strings included, exactly like Meta's published template.
LLAMA31 = r"""
{%- macro tool_list(tools) %}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.\n\n' }}
    {%- for tool in tools %}
        {{- tool | tojson(indent=4) + '\n\n' }}
    {%- endfor %}
{%- endmacro %}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- elif tools is not defined %}
    {%- set tools = none %}
{%- endif %}
{%- set builtin = builtin_tools if builtin_tools is defined else none %}
{%- set tools_in_user = tools_in_user_message if tools_in_user_message is defined else true %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] | trim %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system = '' %}
    {%- set turns = messages %}
{%- endif %}
{{- bos_token + '<|start_header_id|>system<|end_header_id|>\n\n' }}
{%- if builtin is not none or tools is not none %}
    {{- 'Environment: ipython\n' }}
{%- endif %}
{%- if builtin is not none %}
    {{- 'Tools: ' + builtin | reject('equalto', 'code_interpreter') | join(', ') + '\n\n' }}
{%- endif %}
{{- 'Cutting Knowledge Date: December 2023\nToday Date: ' + (date_string if date_string is defined else '26 Jul 2024') + '\n\n' }}
{%- if tools is not none and not tools_in_user %}
    {{- 'You have access to the following functions. To call a function, please respond with JSON for a function call.' + tool_list(tools) }}
{%- endif %}
{{- system + '<|eot_id|>' }}
{%- if tools is not none and tools_in_user %}
    {%- if turns | length == 0 %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
    {%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n' + tool_list(tools) + turns[0]['content'] | trim + '<|eot_id|>' }}
    {%- set turns = turns[1:] %}
{%- endif %}
{%- for message in turns %}
    {%- if 'tool_calls' in message %}
        {%- if message['tool_calls'] | length != 1 %}
            {{- raise_exception('This model only supports single tool-calls at once!') }}
        {%- endif %}
        {%- set call = message['tool_calls'][0]['function'] %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
        {%- if builtin is not none and call['name'] in builtin %}
            {{- '<|python_tag|>' + call['name'] + '.call(' }}
            {%- for key, value in call['arguments'] | items %}
                {{- key + '="' + value + '"' + ('' if loop.last else ', ') }}
            {%- endfor %}
            {{- ')' }}
        {%- else %}
            {{- '{"name": "' + call['name'] + '", "parameters": ' + call['arguments'] | tojson + '}' }}
        {%- endif %}
        {{- '<|eom_id|>' if builtin is not none else '<|eot_id|>' }}
    {%- elif message['role'] in ['tool', 'ipython'] %}
        {{- '<|start_header_id|>ipython<|end_header_id|>\n\n' }}
        {%- if message['content'] is mapping or message['content'] is iterable %}
            {{- message['content'] | tojson }}
        {%- else %}
            {{- message['content'] }}
        {%- endif %}
        {{- '<|eot_id|>' }}
    {%- else %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# Mistral-7B-Instruct v0.1/v0.2 ("v1" tokenizer): an optional system prompt is folded into the
# first user turn; no generation prompt is needed because [/INST] already ends the user turn.
MISTRAL = r"""
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system = none %}
    {%- set turns = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in turns %}
    {%- if (message['role'] == 'user') != (loop.index0 is even) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system is not none %}
            {{- ' [INST] ' + system + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token }}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

# Mistral-7B-Instruct v0.3 ("v3" tokenizer) without tools: no space before [INST] or [/INST], the
# answer is trimmed, and the system message goes into the *last* user turn only, so a conversation
# that ends on an assistant turn renders without it (as upstream does).
MISTRAL_V3 = r"""
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system = none %}
    {%- set turns = messages %}
{%- endif %}
{%- for message in turns %}
    {%- if (message['role'] == 'user') != (loop.index0 is even) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
{%- endfor %}
{{- bos_token }}
{%- for message in turns %}
    {%- if message['role'] == 'user' %}
        {%- if loop.last and system is not none %}
            {{- '[INST] ' + system + '\n\n' + message['content'] + '[/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + '[/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] | trim + eos_token }}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""
