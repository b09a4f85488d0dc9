//! Airlock's LLM gateway: what reaches a model provider is redacted,
//! budgeted, idempotent and audited, and the answer comes back restored.
//!
//! **Boundary.** Every model call an agent makes — through the gateway's own
//! listener ([`serve`], virtual keys) or intercepted inside `airlock run`
//! ([`GatewayHook`]) — goes through one engine ([`Gateway`]): the body is
//! parsed as the provider's schema (OpenAI chat/responses/embeddings/models,
//! Anthropic messages; unknown fields kept), every text the provider would
//! see is masked with a per-run reversible `airlock-scrub` session (secrets
//! always, personal data unless configured off), the worst-case cost is
//! reserved atomically against every budget that applies (org > team >
//! agent > run > key) *before* any upstream call, the call carries an
//! `Idempotency-Key` so a retry is charged once and a completed answer is
//! replayed, and the answer — whole or streamed as SSE — has placeholders
//! restored (also split across deltas and in tool-call arguments) and
//! secrets the provider wrote masked. One audit record per call (tokens,
//! cost, reserved vs settled, masking counts, key, latency, outcome; never
//! prompt or completion text).
//!
//! **What it trusts.** The price table (data, dated, overridable), the
//! SQLite store, the scrubber's rules, and the provider to report honest
//! usage. It does not trust the caller (bodies are bounded and parsed; keys
//! are compared by hash) or the provider's answer (scrubbed, size-bounded;
//! compressed answers are refused).
//!
//! **Guardrails and privacy.** Per agent (over gateway-wide defaults): a
//! model allow-list, `max_tokens_per_step` (deny or clamp), and per-run
//! token and cost caps, all checked before anything is reserved or sent.
//! `standard` privacy keeps the provider's (placeholder-bearing) answer for
//! replay, sealed with AES-256-GCM under a random per-process key and purged
//! after the retention period; `strict` keeps no content, and a retry of a
//! completed call is refused rather than sent twice.
//!
//! **What it does not guarantee.** Detection is the scrubber's: data in a
//! format it does not know reaches the provider. Prompt tokens are bounded
//! from above by text bytes (a byte-level BPE token covers at least one
//! byte), which over-reserves but never under-reserves for text; images and
//! audio are priced only by their text fields. In a stream, a secret the
//! provider writes across deltas is masked when it is a registered secret
//! (the end that could start one is held back) or a token-shaped match of
//! at most 512 bytes; a pattern match that spans whitespace or a delimiter
//! (an assignment like `password = "…"`, a PEM block) and arrives across
//! deltas is not. Per-run caps are counted in this process (a run lives in
//! one); a restart forgets them. Answers stored by an earlier process cannot
//! be opened (its key is gone): a retry of such a call is refused with
//! `idempotency_conflict`, never sent twice. Scrubbing sessions live in
//! memory: a gateway restart starts new placeholder numbering.
#![forbid(unsafe_code)]

mod engine;
mod hook;
mod keys;
mod price;
mod provider;
mod redact;
mod restore;
mod server;
mod writer;

pub use engine::{
    Caller, Gateway, GatewayConfig, GatewayError, Guardrails, Privacy, Provider, StepLimit,
};
pub use hook::GatewayHook;
pub use keys::{KEY_PREFIX, create_key, key_hash, verify_key};
pub use price::{Price, PriceError, PriceTable};
pub use provider::ProviderKind;
pub use server::serve;
