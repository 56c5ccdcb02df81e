#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod blocking;
mod connector;
mod error;
mod proxy;
pub mod reconnect;
mod stream;
mod tls;

pub use blocking::BlockingStream;
pub use connector::Connector;
pub use error::ProxyError;
pub use error::{ConnectError, Hop};
pub use proxy::{Proxy, ProxyUrlError, SocksReply};
pub use stream::ClientStream;
pub use tls::TlsError;
