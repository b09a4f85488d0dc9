//! The public entry points: [`Scrubber`], its builder, findings and
//! redaction results, and reversible [`Session`]s.

use crate::engine::{Engine, Hit};
use crate::error::ScrubError;
use crate::known;
use crate::mask::{Mask, Masker, Stats};
use crate::ner::{NerHook, NerSpan};
use crate::rules::{self, RuleInfo};
use airlock_types::Secret;
use aws_lc_rs::{hmac, rand};
use std::borrow::Cow;
use std::sync::Arc;

/// What kind of data a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Credentials, tokens, keys, passwords.
    Secret,
    /// Personal data.
    Pii,
}

impl Category {
    /// `"secret"` or `"pii"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::Pii => "pii",
        }
    }
}

/// One thing found. Holds offsets, not the value: take the value from the
/// text you scanned with [`Finding::value`], so a `Finding` can be logged
/// without leaking anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Byte offset where the value starts.
    pub start: usize,
    /// Byte offset just past the value.
    pub end: usize,
    /// Secret or PII.
    pub category: Category,
    /// The type (`github_pat`, `EMAIL`, or a known secret's name).
    pub kind: String,
    /// The rule id that found it (`known_secret` for registered values).
    pub rule: String,
}

impl Finding {
    /// The bytes this finding covers in `text` (the text that was scanned).
    pub fn value<'t>(&self, text: &'t [u8]) -> &'t [u8] {
        text.get(self.start..self.end).unwrap_or_default()
    }
}

/// Result of redacting a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The text with every finding masked.
    pub text: String,
    /// What was masked.
    pub stats: Stats,
}

/// Result of redacting bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactedBytes {
    /// The bytes with every finding masked.
    pub bytes: Vec<u8>,
    /// What was masked.
    pub stats: Stats,
}

pub(crate) struct Inner {
    pub engine: Engine,
    pub secrets_mask: Mask,
    pub pii_mask: Mask,
    key_bytes: Secret<Vec<u8>>,
    pub ner: Vec<Arc<dyn NerHook>>,
}

impl Inner {
    pub(crate) fn masker(&self, reversible: bool) -> Masker {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.key_bytes.expose());
        Masker::new(self.secrets_mask, self.pii_mask, key, reversible)
    }

    /// Mask `hay[from..to]` given the hits inside it; NER hooks run on the
    /// segment's valid UTF-8 pieces.
    pub(crate) fn apply(
        &self,
        hay: &[u8],
        from: usize,
        to: usize,
        hits: &[Hit],
        masker: &mut Masker,
        out: &mut Vec<u8>,
    ) {
        let mut all: Vec<(usize, usize, Category, Cow<'_, str>)> = hits
            .iter()
            .filter(|h| h.start >= from && h.end <= to)
            .map(|h| {
                let l = &self.engine.labels[h.label as usize];
                (h.start, h.end, l.category, Cow::Borrowed(l.kind.as_str()))
            })
            .collect();
        if !self.ner.is_empty() {
            for (s, e, kind) in ner_spans(&self.ner, &hay[from..to]) {
                all.push((from + s, from + e, Category::Pii, Cow::Owned(kind)));
            }
            all.sort_by_key(|x| (x.0, std::cmp::Reverse(x.1)));
        }
        // Room for the placeholders too: a placeholder is longer than most
        // values, and growing a buffer of the whole input copies all of it
        // (a stream's 1 MiB steps were copied once each).
        let room = all
            .iter()
            .map(|x| PLACEHOLDER_ROOM + x.3.len())
            .sum::<usize>();
        out.reserve(to.saturating_sub(from).saturating_add(room));
        let mut pos = from;
        for (s, e, cat, kind) in all {
            if s < pos {
                // Overlaps an earlier finding: extend its masking.
                pos = pos.max(e);
                continue;
            }
            out.extend_from_slice(&hay[pos..s]);
            masker.mask(cat, &kind, &hay[s..e], out);
            pos = e;
        }
        out.extend_from_slice(&hay[pos..to]);
    }
}

fn ner_spans(hooks: &[Arc<dyn NerHook>], seg: &[u8]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for piece in seg.utf8_chunks() {
        let text = piece.valid();
        if text.is_empty() {
            continue;
        }
        // Offset of this valid piece inside `seg`.
        let base = text.as_ptr() as usize - seg.as_ptr() as usize;
        for hook in hooks {
            for NerSpan { start, end, kind } in hook.find(text) {
                // Clamp to the text and to character boundaries; never panic.
                let mut s = start.min(text.len());
                let mut e = end.min(text.len());
                while s > 0 && !text.is_char_boundary(s) {
                    s -= 1;
                }
                while e < text.len() && !text.is_char_boundary(e) {
                    e += 1;
                }
                if s < e {
                    out.push((base + s, base + e, kind.placeholder_type()));
                }
            }
        }
    }
    out
}

/// Finds and masks secrets and personal data. Cheap to clone (shared rules).
#[derive(Clone)]
pub struct Scrubber {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("rules", &self.inner.engine.rules().len())
            .field("hold_back", &self.inner.engine.hold)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Scrubber`].
pub struct ScrubberBuilder {
    secrets: bool,
    pii: bool,
    extra: Vec<(String, String, Category)>,
    known: Vec<(String, Secret<Vec<u8>>)>,
    secrets_mask: Mask,
    pii_mask: Mask,
    key: Option<Secret<Vec<u8>>>,
    ner: Vec<Arc<dyn NerHook>>,
    phone_regions: Option<Vec<String>>,
}

impl std::fmt::Debug for ScrubberBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrubberBuilder")
            .field("secrets", &self.secrets)
            .field("pii", &self.pii)
            .field("known", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl ScrubberBuilder {
    /// Detect only this category (built-in rules of the other are not loaded;
    /// registered known secrets are always detected).
    pub fn only(mut self, category: Category) -> Self {
        self.secrets = category == Category::Secret;
        self.pii = category == Category::Pii;
        self
    }

    /// Add rules from a TOML rule file (same format as the built-in ones).
    pub fn rules_toml(mut self, file_name: &str, text: &str, category: Category) -> Self {
        self.extra
            .push((file_name.to_string(), text.to_string(), category));
        self
    }

    /// Register an exact value to find in plain, base64 (standard and
    /// URL-safe, every alignment), hex, percent-encoded and JSON-escaped
    /// form. `name` becomes the placeholder type (`[SECRET:name]`) and must be
    /// `[A-Za-z0-9_.-]`, 1–64 bytes; the value must be at least 6 bytes.
    pub fn known_secret(mut self, name: &str, value: &Secret<String>) -> Self {
        self.known.push((
            name.to_string(),
            Secret::new(value.expose().as_bytes().to_vec()),
        ));
        self
    }

    /// Like [`known_secret`](Self::known_secret) for binary values.
    pub fn known_secret_bytes(mut self, name: &str, value: &Secret<Vec<u8>>) -> Self {
        self.known.push((name.to_string(), value.duplicate()));
        self
    }

    /// How secrets are masked (default: placeholder).
    pub fn mask_secrets(mut self, mask: Mask) -> Self {
        self.secrets_mask = mask;
        self
    }

    /// How personal data is masked (default: placeholder).
    pub fn mask_pii(mut self, mask: Mask) -> Self {
        self.pii_mask = mask;
        self
    }

    /// Key for [`Mask::Hash`] (default: random per scrubber).
    pub fn hash_key(mut self, key: Secret<Vec<u8>>) -> Self {
        self.key = Some(key);
        self
    }

    /// Add a named-entity hook (names, organisations, places).
    pub fn ner(mut self, hook: Arc<dyn NerHook>) -> Self {
        self.ner.push(hook);
        self
    }

    /// Regions (ISO 3166-1 alpha-2, e.g. `["US", "GB"]`) whose national
    /// formats a phone number found by a generic national shape (written
    /// without a country code) is validated against (default: US, GB, DE,
    /// FR, IN, AU, CA, ES, IT, NL, IE, BR, MX). Numbers written with `+`
    /// or `00` are validated for their own country, and numbers a phone
    /// word states (`Mobile: …`, `call …`) for any region, whatever this
    /// list holds.
    pub fn phone_regions<S: AsRef<str>>(mut self, regions: &[S]) -> Self {
        self.phone_regions = Some(regions.iter().map(|r| r.as_ref().to_string()).collect());
        self
    }

    /// Load and validate everything.
    pub fn build(self) -> Result<Scrubber, ScrubError> {
        let mut all = Vec::new();
        if self.secrets {
            all.extend(rules::load(
                "secrets.toml",
                rules::BUILTIN_SECRETS,
                Category::Secret,
                false,
            )?);
        }
        for (file, text, cat) in &self.extra {
            if (*cat == Category::Secret && self.secrets) || (*cat == Category::Pii && self.pii) {
                all.extend(rules::load(file, text, *cat, true)?);
            }
        }
        if self.pii {
            all.extend(rules::load(
                "pii.toml",
                rules::BUILTIN_PII,
                Category::Pii,
                false,
            )?);
        }
        let mut ids = std::collections::HashSet::new();
        for r in &all {
            if !ids.insert(r.id.clone()) {
                return Err(ScrubError::Rule {
                    file: "(combined)".into(),
                    id: r.id.clone(),
                    message: "duplicate rule id".into(),
                });
            }
        }
        let mut known = Vec::new();
        for (name, value) in &self.known {
            let bad = |message: &str| ScrubError::KnownSecret {
                name: name.clone(),
                message: message.into(),
            };
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err(bad("name must be 1-64 bytes of [A-Za-z0-9_.-]"));
            }
            if value.expose().len() < known::MIN_SECRET_LEN {
                return Err(bad(
                    "value is shorter than 6 bytes; too short to match safely",
                ));
            }
            known.push((name.clone(), known::encodings(value.expose())));
        }
        let mut engine = Engine::new(all, known)?;
        if let Some(regions) = &self.phone_regions {
            engine.phone_regions = crate::phone::Regions::parse(regions)
                .map_err(|region| ScrubError::PhoneRegion { region })?;
        }
        let key_bytes = match self.key {
            Some(k) => k,
            None => {
                let mut k = vec![0u8; 32];
                rand::fill(&mut k).map_err(|_| ScrubError::Automaton {
                    what: "hash key",
                    message: "random generator failed".into(),
                })?;
                Secret::new(k)
            }
        };
        Ok(Scrubber {
            inner: Arc::new(Inner {
                engine,
                secrets_mask: self.secrets_mask,
                pii_mask: self.pii_mask,
                key_bytes,
                ner: self.ner,
            }),
        })
    }
}

impl Scrubber {
    /// All built-in secret and PII rules, placeholder masking.
    pub fn builtin() -> Scrubber {
        Scrubber::builder()
            .build()
            .expect("invariant: built-in rules are validated by this crate's tests")
    }

    /// Start configuring a scrubber.
    pub fn builder() -> ScrubberBuilder {
        ScrubberBuilder {
            secrets: true,
            pii: true,
            extra: Vec::new(),
            known: Vec::new(),
            secrets_mask: Mask::Placeholder,
            pii_mask: Mask::Placeholder,
            key: None,
            ner: Vec::new(),
            phone_regions: None,
        }
    }

    /// The loaded rules.
    pub fn rules(&self) -> Vec<RuleInfo> {
        self.inner.engine.rules().iter().map(|r| r.info()).collect()
    }

    /// How many bytes a [`StreamScrubber`](crate::StreamScrubber) holds back (the longest possible
    /// match plus a small margin).
    pub fn hold_back(&self) -> usize {
        self.inner.engine.hold
    }

    /// How many bytes at the end of `text` could be the start of a
    /// registered secret (in any encoding looked for) that the next chunk
    /// completes: the longest suffix of `text` that is a proper prefix of
    /// one. A stream that emits text as it comes holds these bytes back
    /// (0 when nothing could continue into a registered secret).
    pub fn partial_known_secret(&self, text: &[u8]) -> usize {
        self.inner.engine.known_prefix_tail(text)
    }

    /// Find everything in `text`. Offsets are byte offsets on character
    /// boundaries.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut f = self.scan_bytes(text.as_bytes());
        for x in &mut f {
            widen(text, &mut x.start, &mut x.end);
        }
        f
    }

    /// Find everything in arbitrary bytes (invalid UTF-8 is fine).
    pub fn scan_bytes(&self, bytes: &[u8]) -> Vec<Finding> {
        let raws = self.inner.engine.detect(bytes, 0);
        let hits = Engine::merge(&raws, bytes.len());
        let mut out: Vec<Finding> = hits
            .iter()
            .map(|h| {
                let l = &self.inner.engine.labels[h.label as usize];
                Finding {
                    start: h.start,
                    end: h.end,
                    category: l.category,
                    kind: l.kind.clone(),
                    rule: l.rule.clone(),
                }
            })
            .collect();
        if !self.inner.ner.is_empty() {
            for (s, e, kind) in ner_spans(&self.inner.ner, bytes) {
                if !out.iter().any(|f| f.start < e && s < f.end) {
                    out.push(Finding {
                        start: s,
                        end: e,
                        category: Category::Pii,
                        kind,
                        rule: "ner".into(),
                    });
                }
            }
            out.sort_by_key(|f| f.start);
        }
        out
    }

    /// Mask everything in `text`.
    pub fn redact(&self, text: &str) -> Redacted {
        let mut m = self.inner.masker(false);
        let bytes = self.redact_with(text.as_bytes(), &mut m, true);
        Redacted {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            stats: m.stats,
        }
    }

    /// Mask everything in arbitrary bytes. Bytes that are not findings pass
    /// through unchanged.
    pub fn redact_bytes(&self, bytes: &[u8]) -> RedactedBytes {
        let mut m = self.inner.masker(false);
        let out = self.redact_with(bytes, &mut m, false);
        RedactedBytes {
            bytes: out,
            stats: m.stats,
        }
    }

    pub(crate) fn redact_with(&self, bytes: &[u8], masker: &mut Masker, utf8: bool) -> Vec<u8> {
        let raws = self.inner.engine.detect(bytes, 0);
        let mut hits = Engine::merge(&raws, bytes.len());
        if utf8 && let Ok(text) = std::str::from_utf8(bytes) {
            for h in &mut hits {
                widen(text, &mut h.start, &mut h.end);
            }
        }
        let mut out = Vec::new();
        self.inner
            .apply(bytes, 0, bytes.len(), &hits, masker, &mut out);
        out
    }

    /// A reversible session: placeholders are numbered and stable for the
    /// session's life, and [`Session::unmask`] restores them. The mapping
    /// lives in memory only and is zeroized when the session is dropped.
    pub fn session(&self) -> Session {
        Session {
            scrubber: self.clone(),
            masker: self.inner.masker(true),
        }
    }
}

/// A placeholder's bytes besides its type name: `[SECRET:` or `[`, then
/// `_` and a decimal number (at most 20 digits) or `:` and 16 hex digits,
/// then `]`.
const PLACEHOLDER_ROOM: usize = 8 + 21 + 1;

fn widen(text: &str, start: &mut usize, end: &mut usize) {
    while *start > 0 && !text.is_char_boundary(*start) {
        *start -= 1;
    }
    while *end < text.len() && !text.is_char_boundary(*end) {
        *end += 1;
    }
}

/// Reversible masking for one run (e.g. one LLM conversation).
#[derive(Debug)]
pub struct Session {
    scrubber: Scrubber,
    masker: Masker,
}

impl Session {
    /// Mask `text`; the same value always gets the same placeholder within
    /// this session.
    pub fn redact(&mut self, text: &str) -> Redacted {
        let before = self.masker.stats.clone();
        let bytes = self
            .scrubber
            .redact_with(text.as_bytes(), &mut self.masker, true);
        let mut stats = self.masker.stats.clone();
        subtract(&mut stats, &before);
        Redacted {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            stats,
        }
    }

    /// Put the original values back in place of this session's placeholders.
    /// Unknown placeholders are left as they are.
    pub fn unmask(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.masker.unmask(text.as_bytes())).into_owned()
    }

    /// Totals for the whole session.
    pub fn stats(&self) -> &Stats {
        &self.masker.stats
    }
}

fn subtract(a: &mut Stats, b: &Stats) {
    a.secrets -= b.secrets;
    a.pii -= b.pii;
    for (k, v) in &b.by_type {
        if let Some(x) = a.by_type.get_mut(k) {
            *x -= v;
            if *x == 0 {
                a.by_type.remove(k);
            }
        }
    }
}
