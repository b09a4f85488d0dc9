//! A hook for an optional named-entity recogniser (no model ships with
//! Airlock). A hook sees valid UTF-8 text and returns spans; the scrubber
//! clamps them to the text and to character boundaries, so a faulty hook
//! cannot make it panic.

/// What kind of entity a span is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NerKind {
    /// A person's name.
    Person,
    /// A company or organisation.
    Organization,
    /// A place.
    Location,
    /// Anything else; the string becomes the placeholder type (upper-cased,
    /// non-alphanumerics replaced by `_`).
    Other(String),
}

impl NerKind {
    pub(crate) fn placeholder_type(&self) -> String {
        match self {
            NerKind::Person => "PERSON".into(),
            NerKind::Organization => "ORGANIZATION".into(),
            NerKind::Location => "LOCATION".into(),
            NerKind::Other(s) => {
                let t: String = s
                    .chars()
                    .take(32)
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_uppercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                if t.is_empty() { "ENTITY".into() } else { t }
            }
        }
    }
}

/// One entity: byte offsets into the text the hook was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NerSpan {
    /// Start byte offset.
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
    /// Entity kind.
    pub kind: NerKind,
}

/// A named-entity recogniser. Implementations must be cheap to call
/// repeatedly: streams call it once per emitted segment, so an entity that
/// straddles two segments may be missed (NER results are not covered by the
/// stream's chunking guarantee).
pub trait NerHook: Send + Sync + std::fmt::Debug {
    /// Entities in `text`.
    fn find(&self, text: &str) -> Vec<NerSpan>;
}
