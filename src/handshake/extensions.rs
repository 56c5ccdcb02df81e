//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1):
//!
//! ```text
//! Sec-WebSocket-Extensions = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-token = registered-token
//! registered-token = token
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! with `token` and `quoted-string` from RFC 7230 §3.2.6 and the list rule
//! `1#` from RFC 7230 §7.

use std::fmt;

use super::http::{is_tchar, is_token};

/// One extension with its parameters, as offered by a client or accepted
/// by a server (one element of `Sec-WebSocket-Extensions`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtensionOffer {
    /// The extension's registered name, e.g. `permessage-deflate`.
    pub name: String,
    /// The parameters, in the order they appeared.
    pub params: Vec<ExtensionParam>,
}

/// One `extension-param`: a name with an optional value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtensionParam {
    /// The parameter's name, e.g. `client_max_window_bits`.
    pub name: String,
    /// The value, already unquoted if it was sent as a quoted-string;
    /// `None` for a parameter without `=`.
    pub value: Option<String>,
}

impl ExtensionOffer {
    /// An extension without parameters.
    pub fn new(name: impl Into<String>) -> Self {
        ExtensionOffer {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter (builder style); `value` `None` writes the bare name.
    pub fn with_param(mut self, name: impl Into<String>, value: Option<&str>) -> Self {
        self.params.push(ExtensionParam {
            name: name.into(),
            value: value.map(str::to_owned),
        });
        self
    }

    /// The first parameter called `name` (ASCII case-insensitive, as tokens
    /// are in HTTP).
    pub fn param(&self, name: &str) -> Option<&ExtensionParam> {
        self.params
            .iter()
            .find(|param| param.name.eq_ignore_ascii_case(name))
    }

    /// Whether the extension name, every parameter name and every value is a
    /// `token` (RFC 6455 §9.1 requires values to be tokens, even when sent
    /// quoted). Only such offers can be written by [`format_extensions`] and
    /// read back unchanged.
    pub fn is_valid(&self) -> bool {
        is_token(self.name.as_bytes())
            && self.params.iter().all(|param| {
                is_token(param.name.as_bytes())
                    && param
                        .value
                        .as_deref()
                        .map_or(true, |value| is_token(value.as_bytes()))
            })
    }
}

impl fmt::Display for ExtensionOffer {
    /// Writes `name; param; param=value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for param in &self.params {
            write!(f, "; {}", param.name)?;
            if let Some(value) = &param.value {
                write!(f, "={value}")?;
            }
        }
        Ok(())
    }
}

/// A `Sec-WebSocket-Extensions` value that does not follow RFC 6455 §9.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionParseError {
    header_index: usize,
    offset: usize,
    found: Option<u8>,
    expected: &'static str,
}

impl ExtensionParseError {
    /// Which of the header values given to [`parse_extensions`] (counting
    /// from 0) holds the error.
    pub fn header_index(&self) -> usize {
        self.header_index
    }

    /// Byte offset of the error within that header value.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The byte found at [`offset`](Self::offset), `None` at the end of the
    /// value.
    pub fn found(&self) -> Option<u8> {
        self.found
    }

    /// What the grammar allowed at that point.
    pub fn expected(&self) -> &'static str {
        self.expected
    }
}

impl fmt::Display for ExtensionParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid Sec-WebSocket-Extensions value #{} at byte {}: expected {}, found ",
            self.header_index, self.offset, self.expected
        )?;
        match self.found {
            Some(byte) if byte.is_ascii_graphic() => write!(f, "'{}'", char::from(byte)),
            Some(byte) => write!(f, "byte 0x{byte:02x}"),
            None => f.write_str("end of value"),
        }
    }
}

impl std::error::Error for ExtensionParseError {}

/// Parses every `Sec-WebSocket-Extensions` header value, in order, into one
/// list (RFC 7230 §3.2.2: repeated list headers are one list joined by
/// commas).
///
/// Accepted beyond the bare ABNF, as RFC 7230 asks of recipients:
/// * empty list elements (`a, , b`, a leading or trailing comma) are skipped
///   (RFC 7230 §7), but each header value must still hold at least one
///   extension (`1#`);
/// * optional whitespace around `,`, `;` and `=` (RFC 7230 §3.2.3 OWS, and
///   the implied `*LWS` of RFC 2616 §2.1 that RFC 6455 was written against).
///
/// A quoted-string value is unescaped and must then be a token
/// (RFC 6455 §9.1), so `x="10"` gives the value `10`, and `x="1 0"` is an
/// error.
pub fn parse_extensions<'a, I>(header_values: I) -> Result<Vec<ExtensionOffer>, ExtensionParseError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut offers = Vec::new();
    for (header_index, value) in header_values.into_iter().enumerate() {
        let mut cursor = Cursor {
            bytes: value,
            pos: 0,
            header_index,
        };
        cursor.list(&mut offers)?;
    }
    Ok(offers)
}

/// Writes offers as one `Sec-WebSocket-Extensions` value:
/// `a; p=1; q, b`.
///
/// Values are written bare, never quoted: RFC 6455 §9.1 requires every value
/// to be a token anyway. Names and values are not checked here; for offers
/// where [`ExtensionOffer::is_valid`] holds, [`parse_extensions`] reads the
/// output back unchanged. (The client handshake checks validity before
/// writing anything.)
pub fn format_extensions(offers: &[ExtensionOffer]) -> String {
    let mut out = String::new();
    for (i, offer) in offers.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&offer.to_string());
    }
    out
}

/// RFC 7230 §3.2.6: HTAB, SP, VCHAR or obs-text, the bytes a quoted-pair
/// may escape; apart from `"` and `\` (handled by the caller) also `qdtext`.
fn is_qtext_or_escapable(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || (byte >= 0x21 && byte != 0x7f)
}

/// A position in one header value.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    header_index: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    fn error(&self, expected: &'static str) -> ExtensionParseError {
        ExtensionParseError {
            header_index: self.header_index,
            offset: self.pos,
            found: self.peek(),
            expected,
        }
    }

    /// RFC 7230 §3.2.3: `OWS = *( SP / HTAB )`.
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
    }

    /// RFC 7230 §3.2.6: `token = 1*tchar`.
    fn token(&mut self, expected: &'static str) -> Result<String, ExtensionParseError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.bump();
        }
        match self.bytes.get(start..self.pos) {
            // tchar is ASCII, so this is always valid UTF-8.
            Some(token) if !token.is_empty() => Ok(String::from_utf8_lossy(token).into_owned()),
            _ => Err(self.error(expected)),
        }
    }

    /// RFC 7230 §3.2.6:
    /// `quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE`, whose
    /// unescaped content RFC 6455 §9.1 requires to be a token.
    fn quoted_token(&mut self) -> Result<String, ExtensionParseError> {
        const EXPECTED: &str = "a quoted-string whose content is a token";
        let open = self.pos;
        self.bump(); // the opening DQUOTE
        let mut unescaped = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.bump();
                    break;
                }
                // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                Some(b'\\') => {
                    self.bump();
                    match self.peek() {
                        Some(byte) if is_qtext_or_escapable(byte) => {
                            unescaped.push(byte);
                            self.bump();
                        }
                        _ => return Err(self.error("an escaped character")),
                    }
                }
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                Some(byte) if is_qtext_or_escapable(byte) => {
                    unescaped.push(byte);
                    self.bump();
                }
                _ => return Err(self.error("a closing '\"'")),
            }
        }
        if is_token(&unescaped) {
            Ok(String::from_utf8_lossy(&unescaped).into_owned())
        } else {
            // Point at the opening quote: the whole value is at fault.
            Err(ExtensionParseError {
                header_index: self.header_index,
                offset: open,
                found: Some(b'"'),
                expected: EXPECTED,
            })
        }
    }

    /// `1#extension`, with empty elements skipped (RFC 7230 §7).
    fn list(&mut self, offers: &mut Vec<ExtensionOffer>) -> Result<(), ExtensionParseError> {
        let mut found_any = false;
        loop {
            // Empty list elements: `*( "," OWS )` before and between elements.
            self.skip_ows();
            while self.peek() == Some(b',') {
                self.bump();
                self.skip_ows();
            }
            if self.peek().is_none() {
                break;
            }
            offers.push(self.extension()?);
            found_any = true;
            self.skip_ows();
            match self.peek() {
                None => break,
                Some(b',') => self.bump(),
                Some(_) => return Err(self.error("',', ';' or the end of the value")),
            }
        }
        if found_any {
            Ok(())
        } else {
            // RFC 6455 §9.1: `1#extension` needs at least one element.
            Err(self.error("an extension name"))
        }
    }

    /// `extension = extension-token *( ";" extension-param )`.
    fn extension(&mut self) -> Result<ExtensionOffer, ExtensionParseError> {
        let name = self.token("an extension name")?;
        let mut params = Vec::new();
        loop {
            self.skip_ows();
            if self.peek() != Some(b';') {
                return Ok(ExtensionOffer { name, params });
            }
            self.bump();
            self.skip_ows();
            params.push(self.param()?);
        }
    }

    /// `extension-param = token [ "=" (token | quoted-string) ]`.
    fn param(&mut self) -> Result<ExtensionParam, ExtensionParseError> {
        let name = self.token("a parameter name")?;
        let checkpoint = self.pos;
        self.skip_ows();
        if self.peek() != Some(b'=') {
            // No value; let the caller see the whitespace again.
            self.pos = checkpoint;
            return Ok(ExtensionParam { name, value: None });
        }
        self.bump();
        self.skip_ows();
        let value = if self.peek() == Some(b'"') {
            self.quoted_token()?
        } else {
            self.token("a parameter value (token or quoted-string)")?
        };
        Ok(ExtensionParam {
            name,
            value: Some(value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_one(value: &str) -> Result<Vec<ExtensionOffer>, ExtensionParseError> {
        parse_extensions([value.as_bytes()])
    }

    #[test]
    fn chrome_offer() {
        let offers = parse_one("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            offers,
            vec![ExtensionOffer::new("permessage-deflate")
                .with_param("client_max_window_bits", None)]
        );
    }

    #[test]
    fn firefox_style_offer_with_fallback() {
        let offers = parse_one(
            "permessage-deflate; client_max_window_bits=15; server_no_context_takeover, permessage-deflate",
        )
        .unwrap();
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].name, "permessage-deflate");
        assert_eq!(
            offers[0]
                .param("client_max_window_bits")
                .unwrap()
                .value
                .as_deref(),
            Some("15")
        );
        assert_eq!(
            offers[0].param("server_no_context_takeover").unwrap().value,
            None
        );
        assert_eq!(offers[1], ExtensionOffer::new("permessage-deflate"));
    }

    #[test]
    fn param_lookup_is_case_insensitive() {
        let offers = parse_one("x; Foo=1").unwrap();
        assert!(offers[0].param("foo").is_some());
        assert!(offers[0].param("bar").is_none());
    }

    #[test]
    fn quoted_value_is_unquoted() {
        let offers = parse_one(r#"x; a="10"; b="\1\2""#).unwrap();
        assert_eq!(offers[0].param("a").unwrap().value.as_deref(), Some("10"));
        assert_eq!(offers[0].param("b").unwrap().value.as_deref(), Some("12"));
    }

    #[test]
    fn whitespace_around_separators() {
        let offers = parse_one(" a ;b = 1\t;\tc ,\td ").unwrap();
        assert_eq!(
            offers,
            vec![
                ExtensionOffer::new("a")
                    .with_param("b", Some("1"))
                    .with_param("c", None),
                ExtensionOffer::new("d"),
            ]
        );
    }

    #[test]
    fn several_headers_are_one_list() {
        let offers = parse_extensions([&b"a"[..], b"b; x, c"]).unwrap();
        let names: Vec<_> = offers.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn empty_list_elements_are_ignored() {
        // RFC 7230 §7: recipients accept and ignore empty elements.
        let offers = parse_one(", a,, ,b ,").unwrap();
        let names: Vec<_> = offers.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn value_without_any_extension_is_refused() {
        // `1#extension`: at least one element per header value.
        for value in ["", "   ", ",", " , ,"] {
            let err = parse_one(value).unwrap_err();
            assert_eq!(err.expected(), "an extension name", "{value:?}");
            assert_eq!(err.found(), None);
        }
    }

    #[test]
    fn no_header_means_no_offers() {
        assert_eq!(parse_extensions(std::iter::empty()).unwrap(), vec![]);
    }

    #[test]
    fn leading_semicolon_is_refused() {
        let err = parse_one("; a").unwrap_err();
        assert_eq!((err.offset(), err.found()), (0, Some(b';')));
        assert_eq!(err.expected(), "an extension name");
    }

    #[test]
    fn empty_value_is_refused() {
        let err = parse_one("x; a=").unwrap_err();
        assert_eq!((err.offset(), err.found()), (5, None));
        let err = parse_one("x; a=; b").unwrap_err();
        assert_eq!((err.offset(), err.found()), (5, Some(b';')));
    }

    #[test]
    fn quoted_value_must_be_a_token() {
        for value in [r#"x; a="b c""#, r#"x; a="""#, r#"x; a="b,c""#] {
            let err = parse_one(value).unwrap_err();
            assert_eq!(err.offset(), 5, "{value:?}");
            assert_eq!(err.expected(), "a quoted-string whose content is a token");
        }
    }

    #[test]
    fn unterminated_quote_is_refused() {
        let err = parse_one(r#"x; a="10"#).unwrap_err();
        assert_eq!((err.offset(), err.found()), (8, None));
        let err = parse_one("x; a=\"1\\").unwrap_err();
        assert_eq!(err.expected(), "an escaped character");
    }

    #[test]
    fn bad_characters_are_refused() {
        for value in [
            "a b",
            "a; b c",
            "a/b",
            "a; b=c d",
            "a; =1",
            "a;;b",
            "a; b=1=2",
            "a\0",
            "a; b=\x7f",
            "é",
            "a; b=\"\x01\"",
        ] {
            assert!(parse_one(value).is_err(), "{value:?} parsed");
        }
    }

    #[test]
    fn error_names_the_header_and_position() {
        let err = parse_extensions([&b"ok"[..], b"a; b c"]).unwrap_err();
        assert_eq!(err.header_index(), 1);
        assert_eq!(err.offset(), 5);
        assert_eq!(
            err.to_string(),
            "invalid Sec-WebSocket-Extensions value #1 at byte 5: \
             expected ',', ';' or the end of the value, found 'c'"
        );
    }

    #[test]
    fn format_writes_canonical_form() {
        let offers = [
            ExtensionOffer::new("permessage-deflate")
                .with_param("client_max_window_bits", None)
                .with_param("server_max_window_bits", Some("10")),
            ExtensionOffer::new("x-other"),
        ];
        assert_eq!(
            format_extensions(&offers),
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x-other"
        );
        assert_eq!(format_extensions(&[]), "");
    }

    #[test]
    fn is_valid_checks_tokens() {
        assert!(ExtensionOffer::new("a")
            .with_param("b", Some("1"))
            .is_valid());
        assert!(!ExtensionOffer::new("").is_valid());
        assert!(!ExtensionOffer::new("a b").is_valid());
        assert!(!ExtensionOffer::new("a").with_param("b;", None).is_valid());
        assert!(!ExtensionOffer::new("a")
            .with_param("b", Some(""))
            .is_valid());
        assert!(!ExtensionOffer::new("a")
            .with_param("b", Some("1\r\n"))
            .is_valid());
    }

    fn token() -> impl Strategy<Value = String> {
        "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}"
    }

    fn offer() -> impl Strategy<Value = ExtensionOffer> {
        (
            token(),
            prop::collection::vec((token(), prop::option::of(token())), 0..4),
        )
            .prop_map(|(name, params)| ExtensionOffer {
                name,
                params: params
                    .into_iter()
                    .map(|(name, value)| ExtensionParam { name, value })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(offers in prop::collection::vec(offer(), 1..5)) {
            prop_assert!(offers.iter().all(ExtensionOffer::is_valid));
            let text = format_extensions(&offers);
            prop_assert_eq!(parse_one(&text).unwrap(), offers);
        }

        #[test]
        fn parse_never_panics(values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..3)) {
            let _ = parse_extensions(values.iter().map(Vec::as_slice));
        }

        #[test]
        fn parse_never_panics_on_grammar_bytes(value in "[a-c;,=\" \t\\\\]{0,30}") {
            let _ = parse_one(&value);
        }
    }
}
