"""Drives the Airlock gateway with the official openai and anthropic SDKs.

Usage: sdk_client.py OPENAI_BASE ANTHROPIC_BASE KEY TEXT
Prints one JSON object with what the client saw.
"""
import json
import sys

import anthropic
import openai

oa_base, an_base, key, text = sys.argv[1:5]
out = {}
oa = openai.OpenAI(base_url=oa_base, api_key=key, max_retries=2)
an = anthropic.Anthropic(base_url=an_base, api_key=key, max_retries=2)
msgs = [{"role": "user", "content": text}]

r = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=100)
out["chat"] = r.choices[0].message.content

tools = [{"type": "function", "function": {"name": "echo", "parameters": {"type": "object", "properties": {}}}}]
text_s, args_s = "", ""
for ch in oa.chat.completions.create(model="gpt-4o-mini", messages=msgs + [{"role": "user", "content": "stream: " + text}],
                                     max_tokens=100, stream=True, tools=tools):
    for c in ch.choices:
        text_s += c.delta.content or ""
        for tc in c.delta.tool_calls or []:
            args_s += tc.function.arguments or ""
out["chat_stream"] = text_s
out["chat_stream_args"] = args_s

r = oa.responses.create(model="gpt-4o-mini", input="responses: " + text, max_output_tokens=100)
out["responses"] = r.output_text
deltas = ""
with oa.responses.stream(model="gpt-4o-mini", input="responses stream: " + text, max_output_tokens=100) as s:
    for ev in s:
        if ev.type == "response.output_text.delta":
            deltas += ev.delta
out["responses_stream"] = deltas

e = oa.embeddings.create(model="text-embedding-3-small", input="embed " + text)
out["embeddings"] = len(e.data)
out["models"] = [m.id for m in oa.models.list()]

m = an.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "anthropic: " + text}])
out["messages"] = m.content[0].text
acc = ""
with an.messages.stream(model="claude-haiku-4-5", max_tokens=100,
                        messages=[{"role": "user", "content": "anthropic stream: " + text}]) as s:
    for t in s.text_stream:
        acc += t
out["messages_stream"] = acc

r = oa.chat.completions.create(model="fail-once-gpt", messages=[{"role": "user", "content": "retry: " + text}], max_tokens=100)
out["retry"] = r.choices[0].message.content

try:
    oa.chat.completions.create(model="no-such-model", messages=msgs, max_tokens=10)
    out["unknown_model"] = "accepted"
except openai.APIStatusError as ex:
    out["unknown_model"] = {"status": ex.status_code, "body": ex.body}
try:
    an.messages.create(model="no-such-model", max_tokens=10, messages=msgs)
    out["unknown_model_anthropic"] = "accepted"
except anthropic.APIStatusError as ex:
    out["unknown_model_anthropic"] = {"status": ex.status_code, "body": ex.body}
try:
    openai.OpenAI(base_url=oa_base, api_key="alk_wrong", max_retries=0).models.list()
    out["bad_key"] = "accepted"
except openai.APIStatusError as ex:
    out["bad_key"] = {"status": ex.status_code}

print(json.dumps(out))
