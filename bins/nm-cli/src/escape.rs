//! Log bytes made safe for a terminal: a server's output may hold escape sequences (colour, but
//! also ones that move the cursor, retitle the window or rewrite the screen), so when stdout is
//! a terminal, control characters are printed visibly (`cat -v` style: `^[` for ESC) instead of
//! being obeyed. Newlines and tabs pass; `--raw`, or a pipe, gets the bytes unchanged.

/// Escapes a byte stream chunk by chunk; a UTF-8 lead byte split across chunks is carried over.
#[derive(Debug, Default)]
pub(crate) struct Escaper {
    /// A `0xC2` that ended the previous chunk: with the next byte it may be a C1 control.
    pending: Option<u8>,
}

impl Escaper {
    /// The printable form of `chunk`, given what came before it.
    pub(crate) fn escape(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut bytes = self
            .pending
            .take()
            .into_iter()
            .chain(chunk.iter().copied())
            .peekable();
        while let Some(b) = bytes.next() {
            match b {
                b'\n' | b'\t' => out.push(b),
                0x00..=0x1f => out.extend_from_slice(&[b'^', b + 0x40]),
                0x7f => out.extend_from_slice(b"^?"),
                // U+0080..U+009F (C1 controls, e.g. U+009B, a one-character CSI) in UTF-8
                0xc2 => match bytes.peek() {
                    Some(&c) if (0x80..=0x9f).contains(&c) => {
                        bytes.next();
                        out.extend_from_slice(format!("<U+{:04X}>", u32::from(c)).as_bytes());
                    }
                    Some(_) => out.push(b),
                    None => self.pending = Some(b),
                },
                _ => out.push(b),
            }
        }
        out
    }

    /// What is left at the end of the stream.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        self.pending.take().into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Escaper;

    fn esc(chunks: &[&[u8]]) -> String {
        String::from_utf8(esc_bytes(chunks)).unwrap()
    }

    fn esc_bytes(chunks: &[&[u8]]) -> Vec<u8> {
        let mut e = Escaper::default();
        let mut out: Vec<u8> = chunks.iter().flat_map(|c| e.escape(c)).collect();
        out.extend(e.finish());
        out
    }

    #[test]
    fn control_characters_are_shown_not_obeyed_and_text_passes() {
        assert_eq!(
            esc(&[b"\x1b[2J\x1b]0;owned\x07ok\n"]),
            "^[[2J^[]0;owned^Gok\n"
        );
        assert_eq!(esc(&[b"a\tb\r\n\x7f"]), "a\tb^M\n^?");
        assert_eq!(
            esc(&["caf\u{e9} \u{2713}\n".as_bytes()]),
            "caf\u{e9} \u{2713}\n"
        );
    }

    #[test]
    fn a_c1_control_is_shown_even_when_split_across_chunks() {
        assert_eq!(esc(&["x\u{9b}2J".as_bytes()]), "x<U+009B>2J");
        assert_eq!(esc(&[b"x\xc2", b"\x9b2J"]), "x<U+009B>2J");
        assert_eq!(esc(&[b"x\xc2", b"\xa9"]), "x\u{a9}");
        assert_eq!(esc_bytes(&[b"x\xc2"]), b"x\xc2");
    }
}
