//! From a parsed handshake to what the connection will use: the server's
//! response and the client's verification, with extension negotiation
//! (permessage-deflate when the `deflate` feature is on) in one place, so
//! every adapter and every embedding server negotiates the same way.

#[cfg(feature = "deflate")]
use super::format_extensions;
use super::{Accept, ClientRequest, HandshakeError, Rejection, Request, Response};
use crate::config::Config;
use crate::connection::Negotiated;

/// Server: validates `request` (RFC 6455 §4.2.1), negotiates extensions
/// (permessage-deflate per [`Config::deflate`], unless `accept.extensions`
/// is already set, in which case the caller owns extension negotiation),
/// and returns the final [`Accept`] with the [`Negotiated`] result for
/// [`crate::Connection::with_negotiated`].
///
/// # Errors
/// The [`Rejection`] to send when the request is not a valid upgrade.
pub fn negotiate_server(
    request: &Request,
    accept: Accept,
    config: &Config,
) -> Result<(Accept, Negotiated), Rejection> {
    request.validate()?;
    #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
    let mut accept = accept;
    #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
    let mut negotiated = Negotiated {
        protocol: accept.protocol.clone(),
        ..Negotiated::default()
    };
    #[cfg(feature = "deflate")]
    if accept.extensions.is_none() {
        if let Some(settings) = &config.deflate {
            // `validate` refused a malformed extensions header already.
            let offers = request.extensions().unwrap_or_default();
            if let Some((params, answer)) = crate::deflate::server_negotiate(&offers, settings) {
                accept.extensions = Some(format_extensions(&[answer]));
                negotiated.deflate = Some(params);
            }
        }
    }
    #[cfg(not(feature = "deflate"))]
    let _ = config;
    Ok((accept, negotiated))
}

/// Server: [`negotiate_server`], then the bytes of the `101` response.
///
/// # Errors
/// The [`Rejection`] to send instead.
pub fn server_response(
    request: &Request,
    accept: Accept,
    config: &Config,
) -> Result<(Vec<u8>, Negotiated), Rejection> {
    let (accept, negotiated) = negotiate_server(request, accept, config)?;
    Ok((request.accept(&accept)?, negotiated))
}

/// Server: [`negotiate_server`], then the `101` response as header pairs,
/// for a server whose HTTP stack writes the response (hyper, axum).
///
/// # Errors
/// The [`Rejection`] to send instead.
pub fn server_response_headers(
    request: &Request,
    accept: Accept,
    config: &Config,
) -> Result<(Vec<(String, String)>, Negotiated), Rejection> {
    let (accept, negotiated) = negotiate_server(request, accept, config)?;
    Ok((request.accept_headers(&accept)?, negotiated))
}

/// Client: adds the extension offers [`Config`] asks for (a
/// permessage-deflate offer with `client_max_window_bits`) to `request`,
/// unless it already offers permessage-deflate.
pub fn offer_extensions(request: &mut ClientRequest, config: &Config) {
    #[cfg(feature = "deflate")]
    if let Some(settings) = &config.deflate {
        let already = request
            .extensions
            .iter()
            .any(|e| e.name.eq_ignore_ascii_case(crate::deflate::EXTENSION_NAME));
        if !already {
            request
                .extensions
                .push(crate::deflate::client_offer(settings));
        }
    }
    #[cfg(not(feature = "deflate"))]
    let _ = (request, config);
}

/// Client: what the server's verified `101` response settled.
///
/// # Errors
/// [`HandshakeError`] if the server's permessage-deflate answer is invalid
/// for our offer (RFC 7692 §5: the client must fail the connection).
pub fn negotiate_client(
    response: &Response,
    config: &Config,
) -> Result<Negotiated, HandshakeError> {
    #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
    let mut negotiated = Negotiated {
        protocol: response.protocol().map(str::to_owned),
        ..Negotiated::default()
    };
    #[cfg(feature = "deflate")]
    if let Some(settings) = &config.deflate {
        negotiated.deflate = crate::deflate::client_negotiate(response.extensions(), settings)
            .map_err(HandshakeError::Deflate)?;
    }
    #[cfg(not(feature = "deflate"))]
    let _ = config;
    Ok(negotiated)
}
