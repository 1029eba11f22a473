//! Splits the byte stream into JSON-RPC messages.
//!
//! OVSDB sends JSON objects back to back with no delimiter (RFC 7047 section 4), and a read may
//! end anywhere inside one. The framer counts `{`/`[` nesting outside strings (honouring `\"`
//! escapes) and keeps its scan state between reads, so every byte is looked at once however the
//! stream is split.

/// Accumulates bytes and cuts complete top-level JSON values out of them.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    buf: Vec<u8>,
    /// How far `buf` has been scanned.
    scan: usize,
    /// Open `{`/`[` not yet closed at `scan`.
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Framer {
    /// Appends bytes just read.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when bytes of an unfinished message are buffered.
    pub(crate) fn has_partial(&self) -> bool {
        self.buf.iter().any(|b| !b.is_ascii_whitespace())
    }

    /// The next complete message's bytes, `Ok(None)` when more bytes are needed, or an error
    /// describing bytes that cannot start a JSON-RPC message (the stream cannot be resynchronised).
    pub(crate) fn next_frame(&mut self) -> Result<Option<Vec<u8>>, String> {
        while self.scan < self.buf.len() {
            let b = self.buf[self.scan];
            self.scan += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'{' | b'[' => self.depth += 1,
                b if self.depth == 0 && b.is_ascii_whitespace() => {}
                _ if self.depth == 0 => return Err(self.garbage()),
                b'"' => self.in_string = true,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Ok(Some(self.take_frame()));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Removes the message ending at `scan` (and the whitespace before it) from the buffer.
    fn take_frame(&mut self) -> Vec<u8> {
        let start = self.buf[..self.scan]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        let frame = self.buf[start..self.scan].to_vec();
        self.buf.drain(..self.scan);
        self.scan = 0;
        frame
    }

    fn garbage(&self) -> String {
        let at = self.scan - 1;
        let end = self.buf.len().min(at + 40);
        format!(
            "expected a JSON object, got {:?}",
            String::from_utf8_lossy(&self.buf[at..end])
        )
    }
}

#[cfg(test)]
#[path = "framer_tests.rs"]
mod tests;
