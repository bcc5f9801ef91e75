"""ChatGLM3 and GLM-4 templates (role tokens <|system|>/<|user|>/<|assistant|>/<|observation|>)."""

# ruff: noqa: E501  (jinja template lines are kept whole so they read like the templates they are)

from __future__ import annotations

# ChatGLM3-6B: no end-of-turn token; the next role token ends a turn.
CHATGLM3 = r"""
{%- for message in messages %}
    {%- if loop.first %}
        {{- '[gMASK]sop' }}
    {%- endif %}
    {{- '<|' ~ message['role'] ~ '|>\n ' ~ message['content'] }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|assistant|>' }}
{%- endif %}
"""

# GLM-4's tool preamble (glm-4-9b-chat), kept verbatim: the model was trained on this wording.
# Upstream writes "\n\n## name" right after a jinja block tag, so trim_blocks leaves one newline;
# the template below writes that rendered form.
GLM4_TOOL_SYSTEM = "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，你的任务是针对用户的问题和要求提供适当的答复和支持。"
GLM4_TOOL_HINT = "在调用上述函数时，请使用 Json 格式表示调用的参数。"

# GLM-4-9B-Chat. Besides the upstream per-message `tools`/`metadata` fields, this template takes the
# standard `tools` argument (function tools), assistant `tool_calls` (one "<|assistant|>name\n{args}"
# turn per call) and `tool` results (rendered as <|observation|> turns).
GLM4 = (
    r"""
{%- macro tool_block(tools) %}
    {{- '<|system|>\n' + '"""
    + GLM4_TOOL_SYSTEM
    + r"""' + '\n\n# 可用工具' }}
    {%- for tool in tools if tool['type'] == 'function' %}
        {{- '\n## ' + tool['function']['name'] + '\n\n' + tool['function'] | tojson(indent=4) + '\n' + '"""
    + GLM4_TOOL_HINT
    + r"""' }}
    {%- endfor %}
{%- endmacro %}
{{- '[gMASK]<sop>' }}
{%- if tools %}
    {{- tool_block(tools) }}
{%- endif %}
{%- for message in messages %}
    {%- if message['tools'] is defined %}
        {{- tool_block(message['tools']) }}
    {%- endif %}
    {%- set role = 'observation' if message['role'] == 'tool' else message['role'] %}
    {%- if message['content'] %}
        {{- '<|' ~ role ~ '|>' ~ (message['metadata'] if message['metadata'] is defined else '') ~ '\n' ~ message['content'] }}
    {%- endif %}
    {%- for call in message['tool_calls'] or [] %}
        {%- set fn = call['function'] if call['function'] is defined else call %}
        {{- '<|assistant|>' ~ fn['name'] ~ '\n' ~ (fn['arguments'] if fn['arguments'] is string else fn['arguments'] | tojson) }}
    {%- endfor %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|assistant|>' }}
{%- endif %}
"""
)
