//! The HTTP/1.1 pieces both sides of the handshake share: the token and
//! field-value grammar of RFC 7230, comma-list headers, header lookup, and
//! reading a head under the size limits.

use super::Limits;

/// Number of header slots handed to `httparse` without a heap allocation.
const STACK_HEADERS: usize = 64;

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

/// RFC 7230 §7: the non-empty elements of a comma-separated list header,
/// across every header called `name`, with OWS trimmed.
pub(crate) fn list_elements<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// Whether some element of the comma-separated list header `name` is, case
/// insensitively, `token`.
pub(crate) fn list_contains_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    list_elements(headers, name).any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
}

/// The headers parsed by `httparse`, owned, with OWS trimmed from values
/// (RFC 7230 §3.2.4: it is not part of the field value).
pub(crate) fn own_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_owned(), trim_ows(h.value).to_vec()))
        .collect()
}

/// How an attempt to parse an HTTP head ended, before mapping to the
/// side-specific error type.
pub(crate) enum HeadError {
    /// More than `max_head_size` bytes without a complete head.
    TooLarge,
    /// More than `max_headers` header fields.
    TooManyHeaders,
    /// Not HTTP/1.x syntax.
    Malformed(httparse::Error),
}

/// Runs `parse` over at most `limits.max_head_size` bytes of `buf`, with
/// `limits.max_headers` header slots, and maps the outcome.
///
/// Only the first `max_head_size` bytes are looked at, so a large buffer
/// (a head followed by many frames) costs no more than the limit, and a
/// partial head in a buffer longer than the limit is refused.
pub(crate) fn parse_head<T>(
    buf: &[u8],
    limits: &Limits,
    parse: impl for<'b, 'h> FnOnce(&'b [u8], &'h mut [httparse::Header<'b>]) -> httparse::Result<T>,
) -> Result<Option<T>, HeadError> {
    let window = buf.get(..limits.max_head_size).unwrap_or(buf);
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [httparse::Header<'_>] = match stack.get_mut(..limits.max_headers) {
        Some(slots) => slots,
        None => {
            heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
            &mut heap
        }
    };
    match parse(window, slots) {
        Ok(httparse::Status::Complete(value)) => Ok(Some(value)),
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_size => {
            Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(error) => Err(HeadError::Malformed(error)),
    }
}

/// The value of the first field called `name` (ASCII case-insensitive, RFC
/// 7230 §3.2), for header fields stored as both sides of the handshake
/// store them: names as sent, values as bytes, in arrival order.
pub(crate) fn find_header<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
}

/// Every field in arrival order, repeated names included.
pub(crate) fn iter_headers(fields: &[(String, Vec<u8>)]) -> impl Iterator<Item = (&str, &[u8])> {
    fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_slice()))
}

/// Appends `name: value\r\n`.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
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
