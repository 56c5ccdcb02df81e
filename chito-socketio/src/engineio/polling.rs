//! HTTP long-polling on hyper (docs/socketio.md §3): the handshake GET,
//! one parked GET, one POST at a time, bodies bounded by `maxPayload`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};

use super::query::{RequestError, TransportKind};
use super::server::{error_response, plain, BodyError, Inner, RequestBody, SessionCell};
use super::session::{GetAction, PostError};
use super::sid::Sid;

/// v4 polling bodies are text: `text/plain; charset=UTF-8`.
const TEXT: &str = "text/plain; charset=UTF-8";

pub(crate) async fn handle<B: RequestBody>(
    inner: &Arc<Inner>,
    request: Request<B>,
    sid: Option<String>,
) -> Response<Full<Bytes>> {
    let Some(sid) = sid else {
        // A handshake: GET only (reference server code 2).
        if request.method() != Method::GET {
            return error_response(RequestError::BadHandshakeMethod);
        }
        let Some((sid, cell)) = inner.open_session(TransportKind::Polling) else {
            // `max_sessions` reached (or shutdown began) since the checks.
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                Bytes::from_static(b"too many sessions"),
            );
        };
        return get(inner, sid, cell).await;
    };
    let Some((sid, cell)) = inner.find(&sid) else {
        return error_response(RequestError::UnknownSid);
    };
    match *request.method() {
        Method::GET => get(inner, sid, cell).await,
        Method::POST => post(inner, sid, cell, request).await,
        _ => error_response(RequestError::BadRequest),
    }
}

/// Clears the session's parked GET if hyper drops the response future
/// (the client went away) before it was answered.
struct ParkedGet<'a> {
    cell: &'a SessionCell,
    answered: bool,
}

impl Drop for ParkedGet<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.cell.lock().get_abandoned();
        }
    }
}

async fn get(inner: &Arc<Inner>, sid: Sid, cell: Arc<SessionCell>) -> Response<Full<Bytes>> {
    // Subscribed before the first look, so no change is missed.
    let mut changed = cell.subscribe();
    let action = cell.lock().get_arrived(Instant::now());
    inner.after_change(sid, &cell);
    match action {
        GetAction::Respond(body) => plain(StatusCode::OK, TEXT, body),
        GetAction::Reject(error) => error_response(error),
        GetAction::Park => {
            let mut parked = ParkedGet {
                cell: &cell,
                answered: false,
            };
            loop {
                // A `let` of its own: the lock is released before
                // `after_change` takes it again.
                let answer = {
                    let mut session = cell.lock();
                    match session.take_poll_refusal() {
                        Some(refusal) => Some(Err(refusal)),
                        None => session.take_poll_body().map(Ok),
                    }
                };
                if let Some(answer) = answer {
                    parked.answered = true;
                    drop(parked);
                    inner.after_change(sid, &cell);
                    return match answer {
                        Ok(body) => plain(StatusCode::OK, TEXT, body),
                        Err(refusal) => error_response(refusal),
                    };
                }
                if changed.changed().await.is_err() {
                    // The session is gone: the guard clears the slot.
                    return error_response(RequestError::UnknownSid);
                }
            }
        }
    }
}

async fn post<B: RequestBody>(
    inner: &Arc<Inner>,
    sid: Sid,
    cell: Arc<SessionCell>,
    request: Request<B>,
) -> Response<Full<Bytes>> {
    let begun = cell.lock().post_begin();
    if let Err(error) = begun {
        inner.after_change(sid, &cell);
        return post_error(error);
    }
    // Engine.IO v4 polling is text only: binary travels as `b` + base64.
    let binary = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/octet-stream"));
    if binary {
        cell.lock().post_failed();
        inner.after_change(sid, &cell);
        return error_response(RequestError::BadRequest);
    }
    let max_payload = inner.config.engine.max_payload;
    let body = match request.into_body().collect_limited(max_payload).await {
        Ok(body) => body,
        Err(error) => {
            cell.lock().post_failed();
            inner.after_change(sid, &cell);
            return match error {
                BodyError::TooLarge => plain(StatusCode::PAYLOAD_TOO_LARGE, TEXT, Bytes::new()),
                BodyError::Failed => error_response(RequestError::BadRequest),
            };
        }
    };
    let result = cell.lock().post_body(&body, Instant::now());
    inner.after_change(sid, &cell);
    match result {
        Ok(()) => plain(StatusCode::OK, "text/html", Bytes::from_static(b"ok")),
        Err(error) => post_error(error),
    }
}

fn post_error(error: PostError) -> Response<Full<Bytes>> {
    match error {
        PostError::Request(error) => error_response(error),
        PostError::BadPayload => error_response(RequestError::BadRequest),
        PostError::TooLarge => plain(StatusCode::PAYLOAD_TOO_LARGE, TEXT, Bytes::new()),
    }
}
