//! CORS for the polling transport (docs/socketio.md §10): which origins a
//! browser may call the server from, with or without credentials, and the
//! preflight `OPTIONS` answer. Off by default, as in the JavaScript server
//! (its `cors` option is unset unless given).
//!
//! What is answered follows the Fetch standard's CORS protocol: `*` may not
//! be combined with credentials (a browser refuses it), so a server that
//! allows credentials echoes the request's `Origin`; whenever the answer
//! depends on `Origin` (a list, or credentials) it says `Vary: Origin` so a
//! cache keeps one answer per origin.

use std::time::Duration;

use hyper::header::{self, HeaderMap, HeaderValue};

/// Which origins may call the server from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigin {
    /// No CORS headers: only same-origin pages (and non-browser clients).
    #[default]
    Off,
    /// Any origin (`Access-Control-Allow-Origin: *`, or the request's
    /// `Origin` echoed when credentials are allowed).
    Any,
    /// These origins exactly (`https://example.com`, scheme and port
    /// included; compared ignoring ASCII case as hosts are); the request's
    /// `Origin` is echoed when it is one of them, else no CORS header is
    /// sent and the browser blocks the response.
    List(Vec<String>),
}

/// The methods the polling transport uses: a preflight asking for another
/// gets no `Access-Control-Allow-Methods`, so the browser refuses it.
const ALLOWED_METHODS: [&str; 2] = ["GET", "POST"];

/// CORS settings (docs/socketio.md §10).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    /// Which origins may call.
    pub origin: CorsOrigin,
    /// Whether cookies and HTTP authentication may be sent
    /// (`Access-Control-Allow-Credentials: true`; sticky-session cookies of
    /// a load balancer need it).
    pub credentials: bool,
    /// The request headers a preflight may ask for (compared ignoring
    /// case); `None` allows whatever the preflight asks for.
    pub allowed_headers: Option<Vec<String>>,
    /// How long a browser may cache a preflight answer
    /// (`Access-Control-Max-Age`); `None` leaves it to the browser.
    pub max_age: Option<Duration>,
}

/// The request headers CORS looks at, taken before the request is consumed.
#[derive(Debug, Clone, Default)]
pub(crate) struct CorsRequest {
    origin: Option<HeaderValue>,
    request_method: Option<HeaderValue>,
    request_headers: Option<HeaderValue>,
}

impl CorsRequest {
    pub(crate) fn from_headers(headers: &HeaderMap) -> CorsRequest {
        CorsRequest {
            origin: headers.get(header::ORIGIN).cloned(),
            request_method: headers.get(header::ACCESS_CONTROL_REQUEST_METHOD).cloned(),
            request_headers: headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned(),
        }
    }
}

impl Cors {
    /// Any origin, no credentials: the suites' `cors: { origin: "*" }`.
    pub fn any() -> Cors {
        Cors {
            origin: CorsOrigin::Any,
            ..Cors::default()
        }
    }

    /// The `Access-Control-Allow-Origin` value for this request, if its
    /// origin is allowed.
    fn allow_origin(&self, request: &CorsRequest) -> Option<HeaderValue> {
        match &self.origin {
            CorsOrigin::Off => None,
            // `*` with credentials is refused by browsers (Fetch standard,
            // CORS check): echo the origin instead.
            CorsOrigin::Any if self.credentials => request.origin.clone(),
            CorsOrigin::Any => Some(HeaderValue::from_static("*")),
            CorsOrigin::List(allowed) => {
                let origin = request.origin.as_ref()?;
                let origin_text = origin.to_str().ok()?;
                allowed
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(origin_text))
                    .then(|| origin.clone())
            }
        }
    }

    /// Whether the answer depends on the request's `Origin`.
    fn varies_by_origin(&self) -> bool {
        match self.origin {
            CorsOrigin::Off => false,
            CorsOrigin::Any => self.credentials,
            CorsOrigin::List(_) => true,
        }
    }

    /// Adds the CORS headers of an actual (non-preflight) response.
    pub(crate) fn apply(&self, request: &CorsRequest, headers: &mut HeaderMap) {
        if self.varies_by_origin() {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        let Some(origin) = self.allow_origin(request) else {
            return;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Adds the headers of a preflight (`OPTIONS`) answer: those of
    /// [`Cors::apply`], the requested method if polling uses it, the
    /// requested headers that are allowed, the max age.
    pub(crate) fn apply_preflight(&self, request: &CorsRequest, headers: &mut HeaderMap) {
        self.apply(request, headers);
        if self.origin != CorsOrigin::Off {
            headers.append(
                header::VARY,
                HeaderValue::from_static(
                    "Access-Control-Request-Method, Access-Control-Request-Headers",
                ),
            );
        }
        if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            return;
        }
        let methods = match &request.request_method {
            // Echo the one asked for when polling uses it; answer nothing
            // for another (the browser then refuses the request).
            Some(method) => ALLOWED_METHODS
                .iter()
                .any(|allowed| method.as_bytes() == allowed.as_bytes())
                .then(|| method.clone()),
            None => Some(HeaderValue::from_static("GET,POST")),
        };
        if let Some(methods) = methods {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        if let Some(requested) = self.allowed_request_headers(request) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        }
        if let Some(max_age) = self.max_age {
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(max_age.as_secs()),
            );
        }
    }

    /// The preflight's `Access-Control-Request-Headers` that are allowed,
    /// joined again; `None` when there are none.
    fn allowed_request_headers(&self, request: &CorsRequest) -> Option<HeaderValue> {
        let requested = request.request_headers.as_ref()?.to_str().ok()?;
        let allowed: Vec<&str> = requested
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .filter(|name| match &self.allowed_headers {
                None => true,
                Some(allowed) => allowed
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(name)),
            })
            .collect();
        if allowed.is_empty() {
            return None;
        }
        HeaderValue::from_str(&allowed.join(", ")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&str>, method: Option<&str>, headers: Option<&str>) -> CorsRequest {
        CorsRequest {
            origin: origin.map(|o| HeaderValue::from_str(o).unwrap()),
            request_method: method.map(|m| HeaderValue::from_str(m).unwrap()),
            request_headers: headers.map(|h| HeaderValue::from_str(h).unwrap()),
        }
    }

    fn answer(cors: &Cors, request: &CorsRequest, preflight: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if preflight {
            cors.apply_preflight(request, &mut headers);
        } else {
            cors.apply(request, &mut headers);
        }
        headers
    }

    fn get(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
        headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn off_adds_nothing() {
        let r = request(Some("https://a.example"), Some("POST"), Some("x-token"));
        assert!(answer(&Cors::default(), &r, false).is_empty());
        assert!(answer(&Cors::default(), &r, true).is_empty());
    }

    #[test]
    fn any_answers_star_and_no_vary() {
        let h = answer(
            &Cors::any(),
            &request(Some("https://a.example"), None, None),
            false,
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&h, header::VARY), None);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
    }

    #[test]
    fn any_with_credentials_echoes_the_origin() {
        let cors = Cors {
            credentials: true,
            ..Cors::any()
        };
        let h = answer(
            &cors,
            &request(Some("https://a.example"), None, None),
            false,
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://a.example")
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
        assert_eq!(get(&h, header::VARY), Some("Origin"));
    }

    #[test]
    fn a_list_echoes_listed_origins_only() {
        let cors = Cors {
            origin: CorsOrigin::List(vec!["https://a.example".into()]),
            ..Cors::default()
        };
        let h = answer(
            &cors,
            &request(Some("https://A.example"), None, None),
            false,
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://A.example")
        );
        assert_eq!(get(&h, header::VARY), Some("Origin"));
        let h = answer(
            &cors,
            &request(Some("https://b.example"), None, None),
            false,
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
        assert_eq!(get(&h, header::VARY), Some("Origin"));
        let h = answer(&cors, &request(None, None, None), false);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
    }

    #[test]
    fn preflight_echoes_the_allowed_method_and_headers() {
        let cors = Cors {
            allowed_headers: Some(vec!["X-Token".into(), "content-type".into()]),
            max_age: Some(Duration::from_secs(600)),
            ..Cors::any()
        };
        let r = request(
            Some("https://a.example"),
            Some("POST"),
            Some("x-token, X-Other,Content-Type"),
        );
        let h = answer(&cors, &r, true);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_METHODS), Some("POST"));
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some("x-token, Content-Type")
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_MAX_AGE), Some("600"));
        // A method polling does not use is not allowed.
        let h = answer(
            &cors,
            &request(Some("https://a.example"), Some("DELETE"), None),
            true,
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_METHODS), None);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS), None);
        // Without a list, every requested header is echoed.
        let h = answer(&Cors::any(), &r, true);
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some("x-token, X-Other, Content-Type")
        );
    }

    #[test]
    fn preflight_from_an_unlisted_origin_allows_nothing() {
        let cors = Cors {
            origin: CorsOrigin::List(vec!["https://a.example".into()]),
            ..Cors::default()
        };
        let h = answer(
            &cors,
            &request(Some("https://evil.example"), Some("GET"), Some("x")),
            true,
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_METHODS), None);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS), None);
    }
}
