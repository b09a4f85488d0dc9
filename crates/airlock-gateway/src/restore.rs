//! The way back: put the run's original values in place of placeholders,
//! and mask any secret the provider itself wrote, in whole answers and in
//! server-sent event streams of both providers.
//!
//! In a stream, text arrives in deltas (chat text, tool-call argument
//! fragments, Anthropic `text_delta` / `input_json_delta`). Each delta field
//! has its own small buffer: everything up to a `[` that could still start
//! a placeholder is restored and sent at once; from that `[` on, at most
//! [`MAX_PLACEHOLDER`] bytes are held until the placeholder is complete (or
//! cannot be one). Held text is sent when its block ends, as a delta event
//! of the same kind just before the end event.

use crate::provider::Usage;
use airlock_scrub::{Scrubber, Session};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The longest placeholder the scrubber writes: `[SECRET:` + a 64-byte
/// name + `_` + a 20-digit number + `]`.
pub(crate) const MAX_PLACEHOLDER: usize = 8 + 64 + 1 + 20 + 1;

/// The answer could not be restored (the caller fails closed).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    /// Not UTF-8 where text was expected.
    #[error("response is not UTF-8")]
    NotUtf8,
    /// The session's lock was poisoned.
    #[error("scrubbing session unavailable")]
    Session,
}

/// Restores one call's answer.
#[derive(Debug, Clone)]
pub(crate) struct Restorer {
    pub session: Arc<Mutex<Session>>,
    pub echo: Scrubber,
}

impl Restorer {
    /// Mask secrets the provider wrote, then restore placeholders.
    pub fn text(&self, s: &str) -> Result<String, RestoreError> {
        self.restore(s, false)
    }

    /// Like [`Restorer::text`] for text inside a JSON string (tool-call
    /// arguments): each restored value is JSON-escaped, so that a value
    /// holding `"`, `\`, a newline or a control character still yields
    /// valid JSON that decodes to the original value.
    pub fn json_text(&self, s: &str) -> Result<String, RestoreError> {
        self.restore(s, true)
    }

    fn restore(&self, s: &str, json: bool) -> Result<String, RestoreError> {
        // Scrub only the text between placeholder-shaped tokens, so that a
        // placeholder is never taken for (part of) a secret.
        let session = self.session.lock().map_err(|_| RestoreError::Session)?;
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for (a, b) in placeholders(s) {
            self.echo_mask(&s[last..a], &mut out);
            let token = &s[a..b];
            let original = session.unmask(token);
            if json && original != token {
                escape_json_into(&original, &mut out);
            } else {
                out.push_str(&original);
            }
            last = b;
        }
        self.echo_mask(&s[last..], &mut out);
        Ok(out)
    }

    fn echo_mask(&self, s: &str, out: &mut String) {
        if s.is_empty() {
            return;
        }
        let r = self.echo.redact(s);
        out.push_str(&r.text);
    }

    /// Restore every string in a JSON value. An `arguments` string (an
    /// OpenAI tool call's JSON arguments) is restored as JSON text.
    pub fn value(&self, v: &mut Value) -> Result<(), RestoreError> {
        match v {
            Value::String(s) if !s.is_empty() => *s = self.text(s)?,
            Value::Array(a) => {
                for x in a {
                    self.value(x)?;
                }
            }
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match x {
                        Value::String(s) if k == "arguments" && !s.is_empty() => {
                            *s = self.json_text(s)?;
                        }
                        _ => self.value(x)?,
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A whole (non-streamed) answer; returns the new body and the usage
    /// it reports.
    pub fn body(&self, body: &[u8]) -> Result<(Vec<u8>, Option<Usage>), RestoreError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(mut v) => {
                let usage = v.get("usage").and_then(Usage::from_value);
                self.value(&mut v)?;
                Ok((v.to_string().into_bytes(), usage))
            }
            Err(_) => {
                let s = std::str::from_utf8(body).map_err(|_| RestoreError::NotUtf8)?;
                Ok((self.text(s)?.into_bytes(), None))
            }
        }
    }
}

/// Append `s` escaped as the inside of a JSON string.
fn escape_json_into(s: &str, out: &mut String) {
    let quoted = Value::String(s.to_string()).to_string();
    out.push_str(&quoted[1..quoted.len() - 1]);
}

/// Spans of placeholder-shaped tokens: `[` placeholder characters `]`.
fn placeholders(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'[' {
            let mut j = i + 1;
            while j < b.len() && j - i <= MAX_PLACEHOLDER && is_placeholder_byte(b[j]) {
                j += 1;
            }
            if j < b.len() && b[j] == b']' && j > i + 1 {
                out.push((i, j + 1));
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn is_placeholder_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'-')
}

/// Where a held-back placeholder may start: the last `[` followed only by
/// placeholder characters, if close enough to the end; else the end.
fn safe_cut(s: &str) -> usize {
    match s.rfind('[') {
        Some(p)
            if s.len() - p <= MAX_PLACEHOLDER && s[p + 1..].bytes().all(is_placeholder_byte) =>
        {
            p
        }
        _ => s.len(),
    }
}

/// The longest run of secret-token bytes held back at the end of a delta
/// field, so that a token-shaped secret the provider writes across deltas
/// (`sk-…`, `ghp_…`, a JWT) is scanned whole.
const MAX_TOKEN_HOLD: usize = 512;

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b'/' | b'=' | b'~')
}

/// Where to cut a delta field's pending text: everything before the cut is
/// restored and sent now, the rest is held for the next delta. Held: a
/// `[` that may start a placeholder, the end that may be the start of a
/// registered secret (in any encoding the scrubber looks for), and the
/// trailing run of token bytes (at most [`MAX_TOKEN_HOLD`]); the cut never
/// splits a placeholder or a secret found whole.
fn hold_cut(r: &Restorer, s: &str) -> usize {
    let b = s.as_bytes();
    let mut cut = safe_cut(s);
    cut = cut.min(b.len() - r.echo.partial_known_secret(b));
    let run = b.iter().rev().take_while(|&&c| is_token_byte(c)).count();
    if run > 0 {
        cut = cut.min(b.len() - run.min(MAX_TOKEN_HOLD));
    }
    // Never cut through a secret that is already whole, nor a placeholder.
    if cut < b.len() {
        for f in r.echo.scan(s).iter().rev() {
            if f.start < cut && cut < f.end {
                cut = f.start;
            }
        }
    }
    for (a, e) in placeholders(s).into_iter().rev() {
        if a < cut && cut < e {
            cut = a;
        }
    }
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// Which provider stream format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenAI chat completion chunks (and anything else OpenAI-shaped).
    OpenAiChat,
    /// OpenAI Responses API events.
    OpenAiResponses,
    /// Anthropic Messages events.
    Anthropic,
}

/// Restores an SSE stream event by event.
#[derive(Debug)]
pub(crate) struct SseRestore {
    format: Format,
    buf: Vec<u8>,
    /// Held-back text per delta field.
    held: BTreeMap<String, String>,
    /// Anthropic: per block index, the delta type and its text field.
    blocks: BTreeMap<u64, (&'static str, &'static str)>,
    /// OpenAI chat: id, model, created of the stream (for a flush chunk).
    template: Option<Value>,
    /// Usage reported so far.
    pub usage: Option<Usage>,
}

fn find_event_end(b: &[u8]) -> Option<(usize, usize)> {
    let lf = memfind(b, b"\n\n").map(|i| (i, i + 2));
    let crlf = memfind(b, b"\r\n\r\n").map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(c)) => Some(if a.0 <= c.0 { a } else { c }),
        (a, c) => a.or(c),
    }
}

fn memfind(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn event(name: Option<&str>, data: &Value) -> String {
    match name {
        Some(n) => format!("event: {n}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

impl SseRestore {
    pub fn new(format: Format) -> Self {
        SseRestore {
            format,
            buf: Vec::new(),
            held: BTreeMap::new(),
            blocks: BTreeMap::new(),
            template: None,
            usage: None,
        }
    }

    /// Whether a delta field carries JSON text (tool-call arguments).
    fn is_json(&self, key: &str) -> bool {
        match key.as_bytes().first() {
            Some(b't' | b'f') => true,
            Some(b'a') => key[1..]
                .parse::<u64>()
                .ok()
                .and_then(|i| self.blocks.get(&i))
                .is_some_and(|(ty, _)| *ty == "input_json_delta"),
            _ => false,
        }
    }

    fn restore(&self, r: &Restorer, key: &str, s: &str) -> Result<String, RestoreError> {
        if s.is_empty() {
            Ok(String::new())
        } else if self.is_json(key) {
            r.json_text(s)
        } else {
            r.text(s)
        }
    }

    fn feed(&mut self, r: &Restorer, key: String, text: &str) -> Result<String, RestoreError> {
        let mut pending = self.held.remove(&key).unwrap_or_default();
        pending.push_str(text);
        let cut = hold_cut(r, &pending);
        let rest = pending.split_off(cut);
        if !rest.is_empty() {
            self.held.insert(key.clone(), rest);
        }
        self.restore(r, &key, &pending)
    }

    fn flush(&mut self, r: &Restorer, key: &str) -> Result<String, RestoreError> {
        match self.held.remove(key) {
            Some(s) => self.restore(r, key, &s),
            None => Ok(String::new()),
        }
    }

    fn note_usage(&mut self, u: Option<&Value>) {
        if let Some(u) = u.and_then(Usage::from_value) {
            match &mut self.usage {
                Some(x) => x.merge(u),
                None => self.usage = Some(u),
            }
        }
    }

    /// Feed bytes; returns the restored events now complete.
    pub fn push(&mut self, r: &Restorer, chunk: &[u8]) -> Result<Vec<u8>, RestoreError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, next)) = find_event_end(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..next).collect();
            let text = std::str::from_utf8(&raw[..end]).map_err(|_| RestoreError::NotUtf8)?;
            out.extend_from_slice(self.event(r, text)?.as_bytes());
        }
        Ok(out)
    }

    /// End of stream: the rest, with every held-back text flushed.
    pub fn finish(&mut self, r: &Restorer) -> Result<Vec<u8>, RestoreError> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            let raw = std::mem::take(&mut self.buf);
            let text = std::str::from_utf8(&raw).map_err(|_| RestoreError::NotUtf8)?;
            if !text.trim().is_empty() {
                out.extend_from_slice(self.event(r, text.trim_end())?.as_bytes());
            }
        }
        out.extend_from_slice(self.flush_all(r)?.as_bytes());
        Ok(out)
    }

    /// Synthetic delta events for everything still held.
    fn flush_all(&mut self, r: &Restorer) -> Result<String, RestoreError> {
        let keys: Vec<String> = self.held.keys().cloned().collect();
        let mut out = String::new();
        for k in keys {
            let text = self.flush(r, &k)?;
            if text.is_empty() {
                continue;
            }
            out.push_str(&self.synthetic(&k, text));
        }
        Ok(out)
    }

    fn synthetic(&self, key: &str, text: String) -> String {
        let (kind, rest) = key.split_at(1);
        match (self.format, kind) {
            (Format::Anthropic, _) => {
                let idx: u64 = rest.parse().unwrap_or(0);
                let (ty, field) = self
                    .blocks
                    .get(&idx)
                    .copied()
                    .unwrap_or(("text_delta", "text"));
                event(
                    Some("content_block_delta"),
                    &json!({"type": "content_block_delta", "index": idx, "delta": {"type": ty, field: text}}),
                )
            }
            (Format::OpenAiResponses, "f") => event(
                Some("response.function_call_arguments.delta"),
                &json!({"type": "response.function_call_arguments.delta", "item_id": rest, "output_index": 0, "delta": text}),
            ),
            (Format::OpenAiResponses, _) => {
                let (item, ci) = rest.rsplit_once('.').unwrap_or((rest, "0"));
                event(
                    Some("response.output_text.delta"),
                    &json!({"type": "response.output_text.delta", "item_id": item, "output_index": 0,
                            "content_index": ci.parse::<u64>().unwrap_or(0), "delta": text}),
                )
            }
            (Format::OpenAiChat, k) => {
                let mut chunk = self
                    .template
                    .clone()
                    .unwrap_or_else(|| json!({"object": "chat.completion.chunk"}));
                let (choice, tool) = rest.split_once('.').unwrap_or((rest, "0"));
                let choice: u64 = choice.parse().unwrap_or(0);
                let delta = match k {
                    "t" => {
                        json!({"tool_calls": [{"index": tool.parse::<u64>().unwrap_or(0), "function": {"arguments": text}}]})
                    }
                    "r" => json!({"refusal": text}),
                    _ => json!({"content": text}),
                };
                chunk["choices"] =
                    json!([{"index": choice, "delta": delta, "finish_reason": null}]);
                event(None, &chunk)
            }
        }
    }

    fn event(&mut self, r: &Restorer, text: &str) -> Result<String, RestoreError> {
        let mut name = None;
        let mut data = String::new();
        let mut other = String::new();
        let mut has_data = false;
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(v) = line.strip_prefix("event:") {
                name = Some(v.trim_start().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                if has_data {
                    data.push('\n');
                }
                has_data = true;
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            } else {
                other.push_str(line);
                other.push('\n');
            }
        }
        if !has_data {
            return Ok(format!("{text}\n\n"));
        }
        let mut out = other;
        if data.trim() == "[DONE]" {
            out.push_str(&self.flush_all(r)?);
            out.push_str("data: [DONE]\n\n");
            return Ok(out);
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&data) else {
            let restored = r.text(&data)?;
            if let Some(n) = &name {
                out.push_str(&format!("event: {n}\n"));
            }
            for l in restored.split('\n') {
                out.push_str(&format!("data: {l}\n"));
            }
            out.push('\n');
            return Ok(out);
        };
        let before = match self.format {
            Format::OpenAiChat => self.openai_chat(r, &mut v)?,
            Format::OpenAiResponses => self.openai_responses(r, &mut v)?,
            Format::Anthropic => self.anthropic(r, &mut v)?,
        };
        out.push_str(&before);
        out.push_str(&event(name.as_deref(), &v));
        Ok(out)
    }

    fn openai_chat(&mut self, r: &Restorer, v: &mut Value) -> Result<String, RestoreError> {
        self.note_usage(v.get("usage"));
        if self.template.is_none() {
            let mut t = serde_json::Map::new();
            for k in ["id", "object", "created", "model"] {
                if let Some(x) = v.get(k) {
                    t.insert(k.into(), x.clone());
                }
            }
            self.template = Some(Value::Object(t));
        }
        let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
            r.value(v)?;
            return Ok(String::new());
        };
        for c in choices {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finished = c.get("finish_reason").is_some_and(|f| !f.is_null());
            let Some(delta) = c.get_mut("delta").and_then(Value::as_object_mut) else {
                continue;
            };
            for (field, k) in [("content", "c"), ("refusal", "r")] {
                let key = format!("{k}{idx}");
                if let Some(Value::String(s)) = delta.get_mut(field) {
                    let t = std::mem::take(s);
                    *s = self.feed(r, key.clone(), &t)?;
                }
                if finished {
                    let rest = self.flush(r, &key)?;
                    if !rest.is_empty() {
                        match delta.get_mut(field) {
                            Some(Value::String(s)) => s.push_str(&rest),
                            _ => {
                                delta.insert(field.into(), Value::String(rest));
                            }
                        }
                    }
                }
            }
            if let Some(Value::Array(tcs)) = delta.get_mut("tool_calls") {
                for tc in tcs.iter_mut() {
                    let j = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
                    if let Some(Value::String(s)) = tc.pointer_mut("/function/arguments") {
                        let t = std::mem::take(s);
                        *s = self.feed(r, format!("t{idx}.{j}"), &t)?;
                    }
                    if let Some(Value::String(s)) = tc.pointer_mut("/function/name") {
                        *s = r.text(s)?;
                    }
                }
            }
            if finished {
                let prefix = format!("t{idx}.");
                let keys: Vec<String> = self
                    .held
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .cloned()
                    .collect();
                for k in keys {
                    let rest = self.flush(r, &k)?;
                    let j: u64 = k[prefix.len()..].parse().unwrap_or(0);
                    let tcs = delta
                        .entry("tool_calls")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(tcs) = tcs {
                        match tcs
                            .iter_mut()
                            .find(|t| t.get("index").and_then(Value::as_u64) == Some(j))
                        {
                            Some(t) => {
                                if let Some(Value::String(s)) = t.pointer_mut("/function/arguments")
                                {
                                    s.push_str(&rest);
                                } else {
                                    t["function"]["arguments"] = Value::String(rest);
                                }
                            }
                            None => tcs.push(json!({"index": j, "function": {"arguments": rest}})),
                        }
                    }
                }
            }
        }
        Ok(String::new())
    }

    fn openai_responses(&mut self, r: &Restorer, v: &mut Value) -> Result<String, RestoreError> {
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let item = v
            .get("item_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ci = v.get("content_index").and_then(Value::as_u64).unwrap_or(0);
        let key = match ty.as_str() {
            "response.output_text.delta"
            | "response.output_text.done"
            | "response.refusal.delta"
            | "response.refusal.done" => format!("o{item}.{ci}"),
            "response.function_call_arguments.delta" | "response.function_call_arguments.done" => {
                format!("f{item}")
            }
            _ => String::new(),
        };
        if let Some(resp) = v.get("response") {
            let u = resp.get("usage").cloned();
            self.note_usage(u.as_ref());
        }
        if ty.ends_with(".delta") && !key.is_empty() {
            if let Some(Value::String(s)) = v.get_mut("delta") {
                let t = std::mem::take(s);
                *s = self.feed(r, key, &t)?;
            }
            return Ok(String::new());
        }
        let mut before = String::new();
        if ty.ends_with(".done") && !key.is_empty() {
            let rest = self.flush(r, &key)?;
            if !rest.is_empty() {
                let mut ev = self.synthetic(&key, rest);
                if let (Some(seq), Ok(mut d)) = (
                    v.get("sequence_number").cloned(),
                    serde_json::from_str::<Value>(ev.split("data: ").nth(1).unwrap_or("{}").trim()),
                ) {
                    d["sequence_number"] = seq;
                    if let Some(oi) = v.get("output_index") {
                        d["output_index"] = oi.clone();
                    }
                    let name = d
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    ev = event(Some(&name), &d);
                }
                before.push_str(&ev);
            }
        }
        r.value(v)?;
        Ok(before)
    }

    fn anthropic(&mut self, r: &Restorer, v: &mut Value) -> Result<String, RestoreError> {
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match ty.as_str() {
            "message_start" => {
                let u = v.pointer("/message/usage").cloned();
                self.note_usage(u.as_ref());
            }
            "message_delta" => {
                let u = v.get("usage").cloned();
                self.note_usage(u.as_ref());
            }
            "content_block_delta" => {
                let dt = v
                    .pointer("/delta/type")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let (t, field): (&'static str, &'static str) = match dt {
                    "text_delta" => ("text_delta", "text"),
                    "input_json_delta" => ("input_json_delta", "partial_json"),
                    "thinking_delta" => ("thinking_delta", "thinking"),
                    _ => {
                        r.value(v)?;
                        return Ok(String::new());
                    }
                };
                self.blocks.insert(idx, (t, field));
                if let Some(Value::String(s)) = v.pointer_mut(&format!("/delta/{field}")) {
                    let text = std::mem::take(s);
                    *s = self.feed(r, format!("a{idx}"), &text)?;
                }
                return Ok(String::new());
            }
            "content_block_stop" => {
                let key = format!("a{idx}");
                let rest = self.flush(r, &key)?;
                if !rest.is_empty() {
                    return Ok(self.synthetic(&key, rest));
                }
                return Ok(String::new());
            }
            _ => {}
        }
        r.value(v)?;
        Ok(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restorer() -> (Restorer, String) {
        let mut s = Scrubber::builtin().session();
        let ph = s.redact("bob@example.org").text;
        (
            Restorer {
                session: Arc::new(Mutex::new(s)),
                echo: Scrubber::builder()
                    .only(airlock_scrub::Category::Secret)
                    .build()
                    .expect("echo"),
            },
            ph,
        )
    }

    fn run(format: Format, events: &[String], split: usize) -> String {
        let (r, _) = restorer();
        let mut sse = SseRestore::new(format);
        let all: Vec<u8> = events.concat().into_bytes();
        let mut out = Vec::new();
        for c in all.chunks(split.max(1)) {
            out.extend(sse.push(&r, c).expect("push"));
        }
        out.extend(sse.finish(&r).expect("finish"));
        String::from_utf8(out).expect("utf8")
    }

    fn chat_text(out: &str) -> (String, String) {
        let mut text = String::new();
        let mut args = String::new();
        for l in out.lines() {
            let Some(d) = l.strip_prefix("data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(d) else {
                continue;
            };
            for c in v["choices"].as_array().into_iter().flatten() {
                text.push_str(c["delta"]["content"].as_str().unwrap_or(""));
                for t in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                    args.push_str(t["function"]["arguments"].as_str().unwrap_or(""));
                }
            }
        }
        (text, args)
    }

    #[test]
    fn openai_chat_placeholder_split_over_deltas_is_restored_exactly() {
        let (_, ph) = restorer();
        assert_eq!(ph, "[EMAIL_1]");
        let pieces = ["Mail ", "[EMA", "IL", "_1] now [x] ", "[", "EMAIL_1]"];
        let mut events: Vec<String> = pieces
            .iter()
            .map(|p| format!("data: {}\n\n", json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]})))
            .collect();
        for a in ["{\"to\":\"[EM", "AIL_1]\"}"] {
            events.push(format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": a}}]}, "finish_reason": null}]})));
        }
        events.push(format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        ));
        events.push(format!(
            "data: {}\n\n",
            json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}})
        ));
        events.push("data: [DONE]\n\n".into());
        for split in [1, 3, 7, 1000] {
            let out = run(Format::OpenAiChat, &events, split);
            let (text, args) = chat_text(&out);
            assert_eq!(
                text, "Mail bob@example.org now [x] bob@example.org",
                "split {split}"
            );
            assert_eq!(args, "{\"to\":\"bob@example.org\"}");
            assert!(!out.contains("EMAIL_1"));
        }
    }

    /// A registered secret with spaces (no token rule sees it whole) and
    /// one with JSON's special characters.
    const SPACED: &str = "correct horse battery staple 42";
    const AWKWARD: &str = "pa\"ss\\wo\nrd\u{1}end";

    fn restorer_with_secrets() -> Restorer {
        let mut b = Scrubber::builder()
            .mask_secrets(airlock_scrub::Mask::Placeholder)
            .mask_pii(airlock_scrub::Mask::Placeholder);
        let mut e = Scrubber::builder().only(airlock_scrub::Category::Secret);
        for (n, v) in [("spaced", SPACED), ("awkward", AWKWARD)] {
            let v = airlock_types::Secret::new(v.to_string());
            b = b.known_secret(n, &v);
            e = e.known_secret(n, &v);
        }
        Restorer {
            session: Arc::new(Mutex::new(b.build().expect("session").session())),
            echo: e.build().expect("echo"),
        }
    }

    fn pieces(s: &str, n: usize) -> Vec<String> {
        let chars: Vec<char> = s.chars().collect();
        chars.chunks(n).map(|c| c.iter().collect()).collect()
    }

    fn stream(r: &Restorer, format: Format, events: &[String], split: usize) -> String {
        let mut sse = SseRestore::new(format);
        let all: Vec<u8> = events.concat().into_bytes();
        let mut out = Vec::new();
        for c in all.chunks(split.max(1)) {
            out.extend(sse.push(r, c).expect("push"));
        }
        out.extend(sse.finish(r).expect("finish"));
        String::from_utf8(out).expect("utf8")
    }

    /// Concatenated delta text per format: (text, tool arguments).
    fn deltas(format: Format, out: &str) -> (String, String) {
        if format == Format::OpenAiChat {
            return chat_text(out);
        }
        let (mut text, mut args) = (String::new(), String::new());
        for l in out.lines() {
            let Some(v) = l
                .strip_prefix("data: ")
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
            else {
                continue;
            };
            match v["type"].as_str().unwrap_or("") {
                "response.output_text.delta" => text.push_str(v["delta"].as_str().unwrap_or("")),
                "response.function_call_arguments.delta" => {
                    args.push_str(v["delta"].as_str().unwrap_or(""))
                }
                "content_block_delta" if v["delta"]["type"] == "text_delta" => {
                    text.push_str(v["delta"]["text"].as_str().unwrap_or(""))
                }
                "content_block_delta" if v["delta"]["type"] == "input_json_delta" => {
                    args.push_str(v["delta"]["partial_json"].as_str().unwrap_or(""))
                }
                _ => {}
            }
        }
        (text, args)
    }

    /// The real stream shape of each format, with `text` and `args`
    /// sent in `n`-character deltas.
    fn shaped(format: Format, text: &str, args: &str, n: usize) -> Vec<String> {
        let mut ev = Vec::new();
        match format {
            Format::OpenAiChat => {
                let chunk = |d: Value, f: Value| {
                    format!(
                        "data: {}\n\n",
                        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": f}]})
                    )
                };
                ev.push(chunk(
                    json!({"role": "assistant", "content": ""}),
                    Value::Null,
                ));
                for p in pieces(text, n) {
                    ev.push(chunk(json!({"content": p}), Value::Null));
                }
                ev.push(chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}), Value::Null));
                for p in pieces(args, n) {
                    ev.push(chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
                        Value::Null,
                    ));
                }
                ev.push(chunk(json!({}), json!("tool_calls")));
                ev.push("data: [DONE]\n\n".into());
            }
            Format::OpenAiResponses => {
                let e = |v: Value| {
                    format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap_or(""))
                };
                for p in pieces(text, n) {
                    ev.push(e(json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": p})));
                }
                ev.push(e(json!({"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text})));
                for p in pieces(args, n) {
                    ev.push(e(json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": p})));
                }
                ev.push(e(json!({"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 1, "arguments": args})));
            }
            Format::Anthropic => {
                let e = |v: Value| {
                    format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap_or(""))
                };
                ev.push(e(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
                for p in pieces(text, n) {
                    ev.push(e(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})));
                }
                ev.push(e(json!({"type": "content_block_stop", "index": 0})));
                ev.push(e(json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}})));
                for p in pieces(args, n) {
                    ev.push(e(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": p}})));
                }
                ev.push(e(json!({"type": "content_block_stop", "index": 1})));
            }
        }
        ev
    }

    #[test]
    fn a_registered_secret_the_provider_writes_across_deltas_is_masked_in_every_format() {
        let r = restorer_with_secrets();
        let token =
            airlock_scrub::testing::github_style_token("ghp", "0123456789abcdefghijABCDEFGHIJ");
        assert_eq!(r.echo.scan(&token).len(), 1, "a token the scrubber finds");
        let text = format!("the key is {SPACED}, token {token} ok");
        let args = json!({"k": SPACED}).to_string();
        for format in [
            Format::OpenAiChat,
            Format::OpenAiResponses,
            Format::Anthropic,
        ] {
            for n in [1, 2, 3, 7] {
                let out = stream(&r, format, &shaped(format, &text, &args, n), 11);
                assert!(!out.contains(SPACED), "{format:?}/{n}: {out}");
                assert!(!out.contains(&token), "{format:?}/{n}: token leaked");
                let (t, a) = deltas(format, &out);
                assert!(t.starts_with("the key is ") && t.ends_with(" ok"), "{t}");
                assert!(
                    !t.contains("horse") && !t.contains("0123456789abcdefghij"),
                    "{t}"
                );
                let a: Value = serde_json::from_str(&a).expect("arguments stay JSON");
                assert!(!a["k"].as_str().unwrap_or("").contains("horse"), "{a}");
            }
        }
    }

    #[test]
    fn restored_tool_arguments_are_json_escaped_streamed_and_whole() {
        let r = restorer_with_secrets();
        let ph = r.session.lock().expect("session").redact(AWKWARD).text;
        assert!(ph.starts_with('[') && !ph.contains('"'), "{ph}");
        let args = format!("{{\"v\":\"{ph}\",\"w\":\"x {ph} y\"}}");
        let want = json!({"v": AWKWARD, "w": format!("x {AWKWARD} y")});
        for format in [
            Format::OpenAiChat,
            Format::OpenAiResponses,
            Format::Anthropic,
        ] {
            for n in [1, 3, 5, 100] {
                let out = stream(
                    &r,
                    format,
                    &shaped(format, &format!("say {ph}"), &args, n),
                    7,
                );
                let (t, a) = deltas(format, &out);
                assert_eq!(t, format!("say {AWKWARD}"), "{format:?}/{n}");
                let got: Value = serde_json::from_str(&a).expect("valid JSON arguments");
                assert_eq!(got, want, "{format:?}/{n}");
            }
        }
        // Whole answers: OpenAI chat and Responses carry arguments as a string.
        let body = json!({"choices": [{"message": {"content": ph, "tool_calls": [{"function": {"name": "f", "arguments": args}}]}}],
                          "output": [{"type": "function_call", "arguments": args}]});
        let (out, _) = r.body(body.to_string().as_bytes()).expect("restore");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["choices"][0]["message"]["content"], AWKWARD);
        for a in [
            &v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            &v["output"][0]["arguments"],
        ] {
            let got: Value = serde_json::from_str(a.as_str().expect("string")).expect("valid JSON");
            assert_eq!(got, want);
        }
    }

    #[test]
    fn anthropic_held_text_is_flushed_before_block_stop() {
        let evs = [
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi [EMAIL"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}),
        ];
        let events: Vec<String> = evs
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
            .collect();
        let (r, _) = restorer();
        let mut sse = SseRestore::new(Format::Anthropic);
        let out = String::from_utf8(sse.push(&r, events.concat().as_bytes()).expect("push"))
            .expect("utf8");
        let deltas: Vec<&str> = out.lines().filter(|l| l.contains("text_delta")).collect();
        assert_eq!(deltas.len(), 2, "{out}");
        assert!(deltas[1].contains("\"text\":\"[EMAIL\""), "{out}");
        assert!(
            out.find("[EMAIL\"").unwrap_or(usize::MAX)
                < out.find("content_block_stop").unwrap_or(0)
        );
        assert_eq!(
            sse.usage,
            Some(Usage {
                input: 9,
                output: 4
            })
        );
    }
}
