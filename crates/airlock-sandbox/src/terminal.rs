//! Agent output on the operator's terminal, made inert.
//!
//! A terminal obeys escape sequences in what it prints: CSI (`ESC [`) moves
//! the cursor, clears the screen or hides text; OSC (`ESC ]`) sets the window
//! title, writes the clipboard (OSC 52) or makes links (OSC 8); DCS, APC and
//! PM reach further, and some terminals answer queries by typing into the
//! operator's shell. The agent is hostile, so when Airlock's output is a
//! terminal its output passes through [`TerminalFilter`], which shows every
//! control character visibly instead of sending it: C0 controls and DEL in
//! caret notation (`ESC` → `^[`, `BEL` → `^G`, `DEL` → `^?`), C1 controls as
//! `\u{9b}`, and bytes that are not UTF-8 as `\xNN`. Newline, tab and
//! carriage return pass (carriage return only moves to the start of the
//! line, which progress bars need). Text is otherwise unchanged, including
//! bidirectional-override characters, which reorder what is displayed but
//! cannot make the terminal act.
//!
//! The filter is streaming: output split at any byte gives the same result
//! as the whole output.

/// Stream filter; see the module docs.
#[derive(Debug, Default)]
pub struct TerminalFilter {
    /// An incomplete UTF-8 sequence at the end of the last chunk (≤ 3 bytes).
    pending: Vec<u8>,
}

impl TerminalFilter {
    pub fn new() -> TerminalFilter {
        TerminalFilter::default()
    }

    /// Filter the next chunk.
    pub fn push(&mut self, input: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(input);
        let mut out = Vec::with_capacity(buf.len());
        let mut rest = buf.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    render(s, &mut out);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // The first `valid_up_to` bytes are UTF-8 by definition.
                    render(std::str::from_utf8(valid).unwrap_or_default(), &mut out);
                    match e.error_len() {
                        None => {
                            // Cut in the middle of a character: wait for the rest.
                            self.pending = after.to_vec();
                            break;
                        }
                        Some(n) => {
                            for b in &after[..n] {
                                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                            }
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        out
    }

    /// The end of the stream: an incomplete sequence left over is shown as bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        for b in &self.pending {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
        out
    }
}

fn render(s: &str, out: &mut Vec<u8>) {
    for c in s.chars() {
        let n = c as u32;
        match c {
            '\n' | '\t' | '\r' => out.push(n as u8),
            _ if n < 0x20 => out.extend_from_slice(&[b'^', (n as u8) + 0x40]),
            '\u{7f}' => out.extend_from_slice(b"^?"),
            '\u{80}'..='\u{9f}' => out.extend_from_slice(format!("\\u{{{n:x}}}").as_bytes()),
            _ => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(input: &[u8]) -> String {
        let mut f = TerminalFilter::new();
        let mut out = f.push(input);
        out.extend(f.finish());
        String::from_utf8(out).expect("output is UTF-8")
    }

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        assert_eq!(
            whole(b"\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m\n"),
            "^[]0;pwned^G^[[2J^[[31mred^[[0m\n"
        );
        assert_eq!(
            whole(b"\x1b]52;c;Y3VybCBldmlsfHNo\x1b\\"),
            "^[]52;c;Y3VybCBldmlsfHNo^[\\"
        );
        assert_eq!(whole(b"\x1bP+q544e\x1b\\"), "^[P+q544e^[\\");
        assert_eq!(
            whole("\u{9b}2J\u{9d}0;x\u{9c}".as_bytes()),
            "\\u{9b}2J\\u{9d}0;x\\u{9c}"
        );
        assert_eq!(whole(b"a\x00b\x7fc\x08d"), "a^@b^?c^Hd");
    }

    #[test]
    fn text_newlines_tabs_and_carriage_returns_pass() {
        assert_eq!(
            whole("héllo\twörld ✓ 日本\r\n10%\r20%\n".as_bytes()),
            "héllo\twörld ✓ 日本\r\n10%\r20%\n"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_as_hex() {
        assert_eq!(whole(b"a\x9b2Jb\xff"), "a\\x9b2Jb\\xff");
        assert_eq!(whole(b"cut \xe6\x97"), "cut \\xe6\\x97");
    }

    #[test]
    fn any_split_gives_the_whole_result() {
        let input = "x\u{1b}[1m日本\u{9b}é\r\n".as_bytes().to_vec();
        let mut input = input;
        input.extend_from_slice(b"\xff\xe6\x97\xa5z");
        let want = whole(&input);
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let mut f = TerminalFilter::new();
                let mut out = f.push(&input[..a]);
                out.extend(f.push(&input[a..b]));
                out.extend(f.push(&input[b..]));
                out.extend(f.finish());
                assert_eq!(
                    String::from_utf8(out).expect("utf-8"),
                    want,
                    "split {a} {b}"
                );
            }
        }
    }
}
