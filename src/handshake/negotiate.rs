//! What the opening handshake settles for the connection, and the
//! extension negotiation behind it: permessage-deflate (RFC 7692) per
//! [`Config::deflate`], offered by the client machine, answered by the
//! server machine and verified by the client machine. Both machines call
//! into this file, so every adapter and embedder negotiates the same way.
//! Without the `deflate` feature nothing is offered or accepted.

#[cfg(feature = "deflate")]
use super::extensions::format_extensions;
use super::extensions::ExtensionOffer;
use super::HandshakeError;
use crate::config::Config;

/// What the opening handshake settled, handed to the connection
/// ([`crate::Connection::with_negotiated`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Negotiated {
    /// The subprotocol both ends agreed on (`Sec-WebSocket-Protocol`).
    pub protocol: Option<String>,
    /// The permessage-deflate parameters (RFC 7692), if it was negotiated.
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::deflate::DeflateParams>,
}

/// Server: the `Sec-WebSocket-Extensions` answer to the client's `offers`
/// and the parameters it agrees to, per [`Config::deflate`]. Declining
/// every offer is not an error (RFC 7692 §5: the connection goes on
/// without compression), so this cannot fail.
pub(crate) fn server_answer(
    offers: &[ExtensionOffer],
    config: &Config,
) -> (Option<String>, Negotiated) {
    #[cfg(feature = "deflate")]
    if let Some(settings) = &config.deflate {
        if let Some((params, answer)) = crate::deflate::server_negotiate(offers, settings) {
            let negotiated = Negotiated {
                deflate: Some(params),
                ..Negotiated::default()
            };
            return (Some(format_extensions(&[answer])), negotiated);
        }
    }
    #[cfg(not(feature = "deflate"))]
    let _ = (offers, config);
    (None, Negotiated::default())
}

/// Client: the permessage-deflate offer [`Config::deflate`] asks for, unless
/// the request already offers permessage-deflate itself (then that offer is
/// the caller's choice and is sent as it is).
pub(crate) fn client_offer(offered: &[ExtensionOffer], config: &Config) -> Option<ExtensionOffer> {
    #[cfg(feature = "deflate")]
    if let Some(settings) = &config.deflate {
        let already = offered
            .iter()
            .any(|e| e.name.eq_ignore_ascii_case(crate::deflate::EXTENSION_NAME));
        if !already {
            return Some(crate::deflate::client_offer(settings));
        }
    }
    #[cfg(not(feature = "deflate"))]
    let _ = (offered, config);
    None
}

/// Client: what is needed to check the server's answer once it arrives
/// (the settings the offer was made from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientNegotiation {
    #[cfg(feature = "deflate")]
    deflate: Option<crate::deflate::DeflateConfig>,
}

impl ClientNegotiation {
    pub(crate) fn new(config: &Config) -> Self {
        #[cfg(not(feature = "deflate"))]
        let _ = config;
        ClientNegotiation {
            #[cfg(feature = "deflate")]
            deflate: config.deflate.clone(),
        }
    }

    /// What the server's verified `101` settled, from its selected
    /// `protocol` and accepted `extensions`.
    ///
    /// # Errors
    /// [`HandshakeError::Deflate`] if the permessage-deflate answer is
    /// invalid for our offer (RFC 7692 §5: the client must fail the
    /// connection).
    pub(crate) fn finish(
        &self,
        protocol: Option<&str>,
        extensions: &[ExtensionOffer],
    ) -> Result<Negotiated, HandshakeError> {
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut negotiated = Negotiated {
            protocol: protocol.map(str::to_owned),
            ..Negotiated::default()
        };
        #[cfg(feature = "deflate")]
        if let Some(settings) = &self.deflate {
            negotiated.deflate = crate::deflate::client_negotiate(extensions, settings)
                .map_err(HandshakeError::Deflate)?;
        }
        #[cfg(not(feature = "deflate"))]
        let _ = extensions;
        Ok(negotiated)
    }
}
