//! Known secrets: exact values registered at run time, and every encoding
//! of them we look for.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// Shortest value we accept: shorter ones would match by accident.
pub(crate) const MIN_SECRET_LEN: usize = 6;
/// Shortest base64 fragment we search for (shorter fragments are too common).
const MIN_FRAGMENT: usize = 6;

/// The byte strings that reveal `secret` in some encoding. Each is at least
/// [`MIN_FRAGMENT`] bytes, and every one of them is fully determined by the
/// secret's bytes, so finding it means the secret (or most of it) is there.
pub(crate) fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![secret.to_vec()];

    // Base64, standard and URL-safe alphabets, at each of the 3 alignments the
    // secret can have inside a larger encoded blob. For alignment `a` we encode
    // `a` zero bytes + secret and keep only the characters whose 6 bits come
    // entirely from the secret.
    for a in 0..3usize {
        let mut buf = vec![0u8; a];
        buf.extend_from_slice(secret);
        let first = (8 * a).div_ceil(6);
        let last = (8 * (a + secret.len())) / 6; // exclusive
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let enc = engine.encode(&buf).into_bytes();
            if last > first && last <= enc.len() && last - first >= MIN_FRAGMENT {
                out.push(enc[first..last].to_vec());
            }
        }
    }

    // Hex, both cases.
    let lower: Vec<u8> = secret
        .iter()
        .flat_map(|b| hex_pair(*b, b"0123456789abcdef"))
        .collect();
    let upper: Vec<u8> = secret
        .iter()
        .flat_map(|b| hex_pair(*b, b"0123456789ABCDEF"))
        .collect();
    out.push(lower);
    out.push(upper);

    // Percent-encoding (RFC 3986: everything but unreserved), both hex cases,
    // plus the form-encoding variant where space is `+`.
    for (digits, plus) in [
        (b"0123456789ABCDEF", false),
        (b"0123456789abcdef", false),
        (b"0123456789ABCDEF", true),
    ] {
        let mut enc = Vec::with_capacity(secret.len() * 3);
        for &b in secret {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                enc.push(b);
            } else if plus && b == b' ' {
                enc.push(b'+');
            } else {
                enc.push(b'%');
                enc.extend_from_slice(&hex_pair(b, digits));
            }
        }
        out.push(enc);
    }

    // JSON string escaping: the minimal form, the form that escapes `/`, and
    // the all-\u form some serializers use for non-ASCII and HTML-sensitive bytes.
    out.push(json_escape(secret, false, false));
    out.push(json_escape(secret, true, false));
    out.push(json_escape(secret, false, true));

    out.sort();
    out.dedup();
    out.retain(|e| e.len() >= MIN_FRAGMENT.min(secret.len()));
    out
}

fn hex_pair(b: u8, digits: &[u8; 16]) -> [u8; 2] {
    [digits[usize::from(b >> 4)], digits[usize::from(b & 0xF)]]
}

fn json_escape(secret: &[u8], escape_slash: bool, escape_html: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(secret.len() + 8);
    let text = String::from_utf8_lossy(secret);
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '/' if escape_slash => out.extend_from_slice(b"\\/"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20
                || (escape_html && matches!(c, '<' | '>' | '&' | '\'' | '='))
                || (escape_html && !c.is_ascii()) =>
            {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{:04x}", u).as_bytes());
                }
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn every_alignment_of_base64_is_covered() {
        let secret = b"alh_0123456789abcdef";
        let encs = encodings(secret);
        for pad in 0..3 {
            let mut blob = b"xx".repeat(pad).to_vec();
            blob.truncate(pad);
            blob.extend_from_slice(b"{\"key\":\"");
            blob.extend_from_slice(secret);
            blob.extend_from_slice(b"\"}");
            for enc in [STANDARD.encode(&blob), URL_SAFE_NO_PAD.encode(&blob)] {
                assert!(
                    encs.iter()
                        .any(|e| enc.as_bytes().windows(e.len()).any(|w| w == &e[..])),
                    "alignment {pad}: {enc}"
                );
            }
        }
    }
}
