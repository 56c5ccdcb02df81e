//! The HTTP/1.1 pieces both sides of the handshake share: the token and
//! field-value grammar of RFC 7230, comma-list headers, header lookup, and
//! [`HeadBuffer`], which collects a head from arbitrary chunks under the
//! size limits and splits off the bytes that follow it.

/// Number of header slots handed to `httparse` without a heap allocation.
const STACK_HEADERS: usize = 64;

/// Header fields as both sides store them: names as sent, values as bytes
/// with OWS trimmed (RFC 7230 §3.2.4: it is not part of the value), in
/// arrival order, repeated names kept.
pub(crate) type Fields = Vec<(String, Vec<u8>)>;

/// RFC 7230 §3.2.6: `tchar`, the characters of a `token`.
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// RFC 7230 §3.2.6: `token = 1*tchar`.
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// RFC 7230 §3.2: a `field-value` we are willing to write: visible
/// characters, obs-text, spaces and tabs, so never CR, LF, NUL or another
/// control character that could end the field early (header injection).
pub(crate) fn is_safe_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || b == b' ' || (b >= 0x21 && b != 0x7f))
}

/// RFC 7230 §3.2.3: optional whitespace is spaces and horizontal tabs.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |last| last + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// The values of every field called `name` (ASCII case-insensitive,
/// RFC 7230 §3.2), in arrival order.
pub(crate) fn header_values<'a>(
    fields: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
}

/// The value of the first field called `name`.
pub(crate) fn find_header<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
}

/// The single field called `name`; `Err(())` if it appears more than once
/// (RFC 7230 §3.2.2: only list fields may repeat).
pub(crate) fn single_header<'a>(
    fields: &'a [(String, Vec<u8>)],
    name: &str,
) -> Result<Option<&'a [u8]>, ()> {
    let mut values = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice());
    let first = values.next();
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}

/// Every field in arrival order, repeated names included.
pub(crate) fn iter_headers(fields: &[(String, Vec<u8>)]) -> impl Iterator<Item = (&str, &[u8])> {
    fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_slice()))
}

/// RFC 7230 §7: the non-empty elements of a comma-separated list header,
/// across every field called `name`, with OWS trimmed.
pub(crate) fn list_elements<'a>(
    fields: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    header_values(fields, name)
        .flat_map(|value| value.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// Whether some element of the comma-separated list header `name` is, case
/// insensitively, `token`.
pub(crate) fn list_contains_token(fields: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    list_elements(fields, name).any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
}

/// The headers parsed by `httparse`, owned, with OWS trimmed from values.
pub(crate) fn own_headers(headers: &[httparse::Header<'_>]) -> Fields {
    headers
        .iter()
        .map(|h| (h.name.to_owned(), trim_ows(h.value).to_vec()))
        .collect()
}

/// Appends `name: value\r\n`.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// How an attempt to read an HTTP head failed, before each side maps it to
/// its own error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// More than `max_size` bytes without a complete head.
    TooLarge,
    /// More than `max_headers` header fields.
    TooManyHeaders,
    /// Not HTTP/1.x syntax; the parser's message.
    Malformed(String),
}

/// The bytes of an HTTP head as they arrive, in chunks of any size.
///
/// Both handshake machines own one. Only the first `max_size` bytes are
/// ever parsed, so a large buffer (a head followed by frames) costs no more
/// than the limit, and once more than `max_size` bytes are held without the
/// end of the head the head is refused: the buffer is never longer than
/// `max_size` plus the last chunk fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeadBuffer {
    buf: Vec<u8>,
    max_size: usize,
    max_headers: usize,
}

impl HeadBuffer {
    pub(crate) fn new(max_size: usize, max_headers: usize) -> Self {
        HeadBuffer {
            buf: Vec::new(),
            max_size,
            max_headers,
        }
    }

    /// The largest head accepted, in bytes.
    pub(crate) fn max_size(&self) -> usize {
        self.max_size
    }

    /// The most header fields accepted.
    pub(crate) fn max_headers(&self) -> usize {
        self.max_headers
    }

    /// How many bytes are buffered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Appends `bytes` and tries `parse` on the head so far.
    ///
    /// `parse` gets the bytes (at most `max_size` of them) and `max_headers`
    /// header slots and returns the parsed value with the head's length.
    /// On success the buffer is emptied and the bytes after the head are
    /// returned with the value: they already belong to the WebSocket
    /// connection (a peer may send frames right behind its head).
    pub(crate) fn feed<T>(
        &mut self,
        bytes: &[u8],
        parse: impl for<'b, 'h> FnOnce(
            &'b [u8],
            &'h mut [httparse::Header<'b>],
        ) -> httparse::Result<(T, usize)>,
    ) -> Result<Option<(T, Vec<u8>)>, HeadError> {
        // A head that arrives in one piece (the usual case) is parsed where
        // it lies: nothing is buffered, and nothing allocated for it.
        let direct = self.buf.is_empty();
        if !direct {
            self.buf.extend_from_slice(bytes);
        }
        let input: &[u8] = if direct { bytes } else { &self.buf };
        let window = input.get(..self.max_size).unwrap_or(input);
        let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
        let mut heap = Vec::new();
        let slots: &mut [httparse::Header<'_>] = match stack.get_mut(..self.max_headers) {
            Some(slots) => slots,
            None => {
                heap.resize(self.max_headers, httparse::EMPTY_HEADER);
                &mut heap
            }
        };
        let outcome = match parse(window, slots) {
            Ok(httparse::Status::Complete((value, consumed))) => {
                // `consumed` is within the window, so within the input; the
                // clamp only keeps a parser bug from panicking here.
                let rest = input.split_at(consumed.min(input.len())).1.to_vec();
                Ok(Some((value, rest)))
            }
            Ok(httparse::Status::Partial) if input.len() > self.max_size => {
                Err(HeadError::TooLarge)
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
            Err(error) => Err(HeadError::Malformed(error.to_string())),
        };
        match &outcome {
            Ok(None) if direct => self.buf.extend_from_slice(bytes),
            Ok(None) => {}
            _ => self.buf = Vec::new(),
        }
        outcome
    }
}

/// How a handshake machine's reading ended, so that later calls get a
/// consistent answer: the same error again, or, after a success, nothing
/// (the bytes belong to the connection; feeding them here is a bug in the
/// caller, which debug builds report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended<E> {
    /// Still reading the head.
    No,
    /// The result was handed out.
    Succeeded,
    /// The head was refused with this error.
    Failed(E),
}

impl<E: Clone> Ended<E> {
    /// The answer to a call once reading ended; `None` while still reading.
    pub(crate) fn replay<T>(&self) -> Option<Result<Option<T>, E>> {
        debug_assert!(
            !matches!(self, Ended::Succeeded),
            "a handshake machine was fed after it handed out its result"
        );
        match self {
            Ended::No => None,
            Ended::Succeeded => Some(Ok(None)),
            Ended::Failed(error) => Some(Err(error.clone())),
        }
    }

    /// Records whether `outcome` ends the reading.
    pub(crate) fn record<T>(&mut self, outcome: &Result<Option<T>, E>) {
        match outcome {
            Ok(None) => {}
            Ok(Some(_)) => *self = Ended::Succeeded,
            Err(error) => *self = Ended::Failed(error.clone()),
        }
    }
}

/// Test helper: feeds `bytes` to a machine's `feed` in chunks of the given
/// sizes (the rest in one piece once they run out) until an outcome, and
/// returns it with the bytes not fed yet (which a caller would hand to the
/// connection along with the leftover).
#[cfg(test)]
pub(crate) fn feed_in_chunks<T, E>(
    bytes: &[u8],
    sizes: impl IntoIterator<Item = usize>,
    mut feed: impl FnMut(&[u8]) -> Result<Option<T>, E>,
) -> Result<Option<(T, &[u8])>, E> {
    let mut sizes = sizes.into_iter();
    let mut rest = bytes;
    loop {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (chunk, after) = rest.split_at(n);
        rest = after;
        match feed(chunk)? {
            None if !rest.is_empty() => {}
            None => return Ok(None),
            Some(done) => return Ok(Some((done, rest))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_ows_edges() {
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b" a b\t"), b"a b");
        assert_eq!(trim_ows(b"x"), b"x");
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"permessage-deflate"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a,b"));
        assert!(!is_token(b"\"a\""));
    }

    #[test]
    fn field_values() {
        assert!(is_safe_field_value(b"a b\tc \xc3\xa9"));
        assert!(!is_safe_field_value(b"a\r\nb: c"));
        assert!(!is_safe_field_value(b"a\nb"));
        assert!(!is_safe_field_value(b"a\0"));
        assert!(!is_safe_field_value(b"\x7f"));
    }
}
