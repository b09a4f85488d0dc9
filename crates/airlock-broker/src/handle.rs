//! Credential handles: what the agent holds instead of a real secret.
//!
//! A handle is `alh_` followed by 40 characters of lower-case base32
//! (`a-z2-7`): 200 bits from the system random generator. It is opaque —
//! nothing about the secret can be derived from it — and worthless outside
//! the broker that minted it.

use crate::BrokerError;

/// Every handle starts with this.
pub const HANDLE_PREFIX: &str = "alh_";
/// Characters after the prefix.
pub const HANDLE_BODY_LEN: usize = 40;
/// Total length of a handle.
pub const HANDLE_LEN: usize = HANDLE_PREFIX.len() + HANDLE_BODY_LEN;
const RANDOM_BYTES: usize = HANDLE_BODY_LEN * 5 / 8; // 25 bytes = 200 bits
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A fresh random handle.
pub(crate) fn mint() -> Result<String, BrokerError> {
    let mut raw = [0u8; RANDOM_BYTES];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| BrokerError::Random)?;
    let mut out = String::with_capacity(HANDLE_LEN);
    out.push_str(HANDLE_PREFIX);
    // Base32: 5 bytes -> 8 characters.
    for chunk in raw.chunks(5) {
        let mut acc = 0u64;
        for b in chunk {
            acc = (acc << 8) | u64::from(*b);
        }
        for i in (0..8).rev() {
            out.push(char::from(ALPHABET[((acc >> (i * 5)) & 31) as usize]));
        }
    }
    zeroize::Zeroize::zeroize(&mut raw);
    Ok(out)
}

/// Whether `s` is exactly a well-formed handle.
pub fn is_well_formed(s: &str) -> bool {
    s.len() == HANDLE_LEN
        && s.starts_with(HANDLE_PREFIX)
        && s.as_bytes()[HANDLE_PREFIX.len()..]
            .iter()
            .all(|b| ALPHABET.contains(b))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Every handle-looking token in `text`: `alh_` at a token boundary followed
/// by the longest run of `[A-Za-z0-9_-]`. Malformed candidates (too short,
/// too long, wrong characters) are returned too, so the caller can refuse
/// them instead of forwarding something that looks like a credential.
/// Linear in the length of `text`.
pub fn find_handles(text: &str) -> impl Iterator<Item = &str> {
    find_handle_spans(text).map(|(_, h)| h)
}

/// [`find_handles`] with each candidate's byte offset.
pub(crate) fn find_handle_spans(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let bytes = text.as_bytes();
    text.match_indices(HANDLE_PREFIX)
        .filter_map(move |(start, _)| {
            if start > 0 && is_token_byte(bytes[start - 1]) {
                return None;
            }
            let body = start + HANDLE_PREFIX.len();
            let len = bytes[body..]
                .iter()
                .take_while(|b| is_token_byte(**b))
                .count();
            Some((start, &text[start..body + len]))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_handles_are_well_formed_and_distinct() {
        let a = mint().expect("mint");
        let b = mint().expect("mint");
        assert!(is_well_formed(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(a.len(), 44);
        assert_eq!(
            find_handles(&format!("Bearer {a}")).collect::<Vec<_>>(),
            vec![a.as_str()]
        );
    }

    #[test]
    fn find_handles_sees_headers_queries_and_malformed_candidates() {
        let h = "alh_abcdefghijklmnopqrstuvwxyz234567abcdefgh";
        assert!(is_well_formed(h));
        let text = format!("a={h}&b=alh_short&c=x_alh_notatboundary,{h}");
        let found: Vec<&str> = find_handles(&text).collect();
        assert_eq!(found, vec![h, "alh_short", h]);
        assert_eq!(find_handles("alh_").collect::<Vec<_>>(), vec!["alh_"]);
        assert_eq!(find_handles("no handles here").count(), 0);
        assert!(!is_well_formed(&format!("{h}a")));
        assert!(!is_well_formed(&h.to_ascii_uppercase()));
        assert!(!is_well_formed(
            "alh_abcdefghijklmnopqrstuvwxyz234567abcdefg1"
        ));
    }
}
