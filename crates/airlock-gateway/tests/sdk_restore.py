"""What the official SDKs see when the provider writes a registered secret
(split across stream deltas) and when restored values with JSON's special
characters land in tool-call arguments.

Usage: sdk_restore.py OPENAI_BASE ANTHROPIC_BASE KEY REVERSED_SECRET AWKWARD
Prints one JSON object with what the client saw.
"""
import json
import sys

import anthropic
import openai

oa_base, an_base, key, reversed_secret, awkward = sys.argv[1:6]
out = {}
oa = openai.OpenAI(base_url=oa_base, api_key=key, max_retries=0)
an = anthropic.Anthropic(base_url=an_base, api_key=key, max_retries=0)

text = ""
for ch in oa.chat.completions.create(model="reverse-gpt", max_tokens=100, stream=True,
                                     messages=[{"role": "user", "content": reversed_secret}]):
    for c in ch.choices:
        text += c.delta.content or ""
out["echo_chat_stream"] = text
out["echo_chat"] = oa.chat.completions.create(
    model="reverse-gpt", max_tokens=100,
    messages=[{"role": "user", "content": "whole " + reversed_secret}]).choices[0].message.content
acc = ""
with an.messages.stream(model="reverse-claude", max_tokens=100,
                        messages=[{"role": "user", "content": reversed_secret}]) as s:
    for t in s.text_stream:
        acc += t
out["echo_messages_stream"] = acc
deltas = ""
with oa.responses.stream(model="reverse-gpt", input=reversed_secret, max_output_tokens=100) as s:
    for ev in s:
        if ev.type == "response.output_text.delta":
            deltas += ev.delta
out["echo_responses_stream"] = deltas

tools = [{"type": "function", "function": {"name": "echo", "parameters": {"type": "object", "properties": {}}}}]
msgs = [{"role": "user", "content": "value " + awkward}]
r = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=100, tools=tools)
out["args"] = json.loads(r.choices[0].message.tool_calls[0].function.arguments)
args = ""
for ch in oa.chat.completions.create(model="gpt-4o-mini", messages=msgs + [{"role": "user", "content": "stream " + awkward}],
                                     max_tokens=100, stream=True, tools=tools):
    for c in ch.choices:
        for tc in c.delta.tool_calls or []:
            args += tc.function.arguments or ""
out["args_stream"] = json.loads(args)
print(json.dumps(out))
