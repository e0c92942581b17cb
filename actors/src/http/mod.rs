//! The HTTP API of a node (docs/api.md): writes, reads, a change stream,
//! status, health, leader transfer and metrics, on actix-web.
//!
//! Why it is part of the library: a broker that embeds [`Node`] gets the
//! same API as an operator running `metawal-node`, by calling [`serve`] on
//! its own actix system. The handlers decide nothing about replication:
//! each one calls one [`Node`] method and maps its result to a status code
//! (`error.rs` holds that mapping, the promise each status makes about
//! writes).
//!
//! One concept per file: `error.rs` the error shape and status mapping,
//! `commands.rs` writes, `reads.rs` topics and snapshot, `watch.rs` the
//! server-sent-event change stream, `admin.rs` status, health, transfer and
//! metrics, `members.rs` listing and changing the members.
//!
//! Limits: request bodies ([`HttpConfig::body_limit_bytes`]), concurrent
//! watch streams ([`HttpConfig::max_watchers`]), how long a watch reader may
//! stall ([`HttpConfig::watch_stall`]), read waits ([`MAX_READ_WAIT`]),
//! connections per worker ([`HttpConfig::max_connections`]) and the time a
//! connection may take to send its request
//! ([`HttpConfig::client_request_timeout`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{ServerHandle, Service};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, HttpRequest};
use futures::StreamExt;
use metawal::NodeId;

use crate::node::Node;

mod admin;
mod commands;
mod error;
mod members;
mod reads;
mod watch;

pub(crate) use error::ApiError;

/// Longest a read may wait (`timeout_ms` is capped at this).
pub const MAX_READ_WAIT: Duration = Duration::from_secs(60);
/// A read's wait when `timeout_ms` is not given.
pub const DEFAULT_READ_WAIT: Duration = Duration::from_secs(5);

/// Configuration of a node's HTTP API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address to bind (port 0 picks one; [`HttpServer::addr`] tells it).
    pub addr: SocketAddr,
    /// A listener bound before the start: served instead of binding
    /// `addr` (see [`crate::config::BoundListener`]).
    pub listener: Option<crate::config::BoundListener>,
    /// Each other node's HTTP address (`host:port`), for the redirects a
    /// follower answers writes with.
    pub peer_http: BTreeMap<NodeId, String>,
    /// Largest request body; more is refused with 413.
    pub body_limit_bytes: usize,
    /// Most `/v1/watch` streams open at once; more get 503.
    pub max_watchers: usize,
    /// A watch reader that takes no event for this long is cut off.
    pub watch_stall: Duration,
    /// Idle watch streams get a keep-alive comment this often.
    pub watch_keep_alive: Duration,
    /// Worker threads (each with its own event loop).
    pub workers: usize,
    /// Most connections per worker; beyond it the worker stops accepting
    /// until one closes.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head within this is
    /// closed (idle connections cost nothing past it).
    pub client_request_timeout: Duration,
    /// Keep-alive of idle HTTP/1.1 connections between requests.
    pub keep_alive: Duration,
    /// Serve HTTPS with this rustls config (see
    /// [`crate::tls::http_server_config`]: the node's certificate, and
    /// optionally a required client certificate). `None`: plain HTTP.
    /// Redirects to other nodes use the same scheme.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl HttpConfig {
    /// Defaults for `addr`: 1 MiB bodies, 256 watchers, a 10 s watch stall
    /// limit, 2 workers of at most 25 000 connections, 5 s to send a
    /// request head, 30 s keep-alive.
    pub fn new(addr: SocketAddr) -> HttpConfig {
        HttpConfig {
            addr,
            listener: None,
            peer_http: BTreeMap::new(),
            body_limit_bytes: 1024 * 1024,
            max_watchers: 256,
            watch_stall: Duration::from_secs(10),
            watch_keep_alive: Duration::from_secs(15),
            workers: 2,
            max_connections: 25_000,
            client_request_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// Why the HTTP API could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid HTTP configuration: {0}")]
    Config(String),
}

/// What every handler shares.
pub(crate) struct Api {
    pub node: Node,
    pub config: HttpConfig,
    /// Open watch streams.
    pub watchers: AtomicUsize,
}

impl Api {
    /// The same request on the leader, or why there is none.
    pub fn to_leader(&self, req: &HttpRequest) -> ApiError {
        let leader = self.node.leader();
        let me = self.node.id();
        // The leader's HTTP address as the membership in force has it, or
        // as configured.
        let membership = self.node.members_in_force();
        let logged = |l: metawal::NodeId| {
            membership
                .member(l)
                .map(|(m, _)| m.http_addr.clone())
                .filter(|a| !a.is_empty())
        };
        let addr = leader
            .filter(|&l| l != me)
            .and_then(|l| logged(l).or_else(|| self.config.peer_http.get(&l).cloned()));
        match addr {
            Some(addr) => {
                let path = req
                    .uri()
                    .path_and_query()
                    .map_or(req.path(), |p| p.as_str());
                let scheme = if self.config.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                ApiError::redirect(format!("{scheme}://{addr}{path}"))
            }
            None => ApiError::no_leader(leader.filter(|l| *l != me)),
        }
    }
}

/// The query string parsed as `T`; a bad one is a 400 naming the problem.
pub(crate) fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_parameter(format!("bad query string: {e}")))
}

/// A request's wait from `timeout_ms`, capped at [`MAX_READ_WAIT`].
pub(crate) fn read_wait(timeout_ms: Option<u64>) -> Duration {
    timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_READ_WAIT)
        .min(MAX_READ_WAIT)
}

/// A running HTTP API.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl HttpServer {
    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, finish requests in flight (for at most a second),
    /// and stop the workers.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

fn header(v: impl ToString) -> HeaderValue {
    // Numbers and ids only: always valid header values.
    HeaderValue::from_str(&v.to_string()).unwrap_or(HeaderValue::from_static("?"))
}

/// Serve `node`'s HTTP API, on the current actix system (the workers are
/// threads of their own). Returns once the address is bound.
pub async fn serve(node: Node, config: HttpConfig) -> Result<HttpServer, HttpError> {
    if config.workers == 0 || config.max_watchers == 0 || config.body_limit_bytes == 0 {
        return Err(HttpError::Config(
            "workers, max_watchers and body_limit_bytes must be at least 1".into(),
        ));
    }
    let api = web::Data::new(Api {
        node,
        config: config.clone(),
        watchers: AtomicUsize::new(0),
    });
    let epoch_h = HeaderName::from_static("x-metawal-epoch");
    let leader_h = HeaderName::from_static("x-metawal-leader");
    let applied_h = HeaderName::from_static("x-metawal-applied");
    let server = actix_web::HttpServer::new(move || {
        let (epoch_h, leader_h, applied_h) = (epoch_h.clone(), leader_h.clone(), applied_h.clone());
        let api_for_headers = api.clone();
        App::new()
            .app_data(api.clone())
            .wrap_fn(move |req, srv| {
                let api = api_for_headers.clone();
                let (epoch_h, leader_h, applied_h) =
                    (epoch_h.clone(), leader_h.clone(), applied_h.clone());
                let fut = srv.call(req);
                async move {
                    let mut res = fut.await?;
                    let node = &api.node;
                    api.node.metrics().http_response(res.status().as_u16());
                    let h = res.headers_mut();
                    h.insert(epoch_h, header(node.epoch()));
                    h.insert(
                        leader_h,
                        node.leader()
                            .map_or(HeaderValue::from_static("none"), header),
                    );
                    h.insert(applied_h, header(node.view().applied_offset()));
                    Ok(res)
                }
            })
            .route("/v1/commands", web::post().to(commands::post_commands))
            .route("/v1/topics", web::get().to(reads::list_topics))
            .route("/v1/topics/{name}", web::get().to(reads::describe_topic))
            .route("/v1/snapshot", web::get().to(reads::snapshot))
            .route("/v1/watch", web::get().to(watch::watch))
            .route("/v1/status", web::get().to(admin::status))
            .route("/v1/leader/transfer", web::post().to(admin::transfer))
            .route("/v1/members", web::get().to(members::list))
            .route("/v1/members", web::post().to(members::add))
            .route("/v1/members/{id}/promote", web::post().to(members::promote))
            .route("/v1/members/{id}", web::delete().to(members::remove))
            .route("/livez", web::get().to(admin::livez))
            .route("/readyz", web::get().to(admin::readyz))
            .route("/metrics", web::get().to(admin::metrics))
            .default_service(web::to(admin::not_found))
    })
    .workers(config.workers)
    .max_connections(config.max_connections)
    .client_request_timeout(config.client_request_timeout)
    .keep_alive(config.keep_alive)
    .shutdown_timeout(1)
    // The process (metawal-node) handles SIGTERM itself: it resigns
    // leadership first.
    .disable_signals()
    // A client that stalls the TLS handshake is dropped as one that
    // stalls its request head is.
    .tls_handshake_timeout(config.client_request_timeout)
    // actix stops accepting on every listener while a worker has 256 TLS
    // handshakes in progress (its default): 512 idle connections that never
    // send a ClientHello would lock every client out until their handshake
    // timeouts fire. Bound handshakes in progress by the connection limit
    // instead; each still ends within `tls_handshake_timeout`.
    .max_connection_rate(config.max_connections);
    let bind_err = |source| HttpError::Bind {
        addr: config.addr,
        source,
    };
    let bound = match &config.listener {
        Some(b) => match b.take().map_err(bind_err)? {
            Some(l) => Some(l),
            None => {
                return Err(HttpError::Config(
                    "the pre-bound HTTP listener was used by an earlier start: pass a new one"
                        .into(),
                ))
            }
        },
        None => None,
    };
    let server = match (&config.tls, bound) {
        (Some(tls), Some(l)) => server.listen_rustls_0_23(l, rustls::ServerConfig::clone(tls)),
        (Some(tls), None) => server.bind_rustls_0_23(config.addr, rustls::ServerConfig::clone(tls)),
        (None, Some(l)) => server.listen(l),
        (None, None) => server.bind(config.addr),
    }
    .map_err(bind_err)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| HttpError::Config(format!("{} bound no address", config.addr)))?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(addr = %addr, tls = config.tls.is_some(), "HTTP API serving");
    Ok(HttpServer { addr, handle })
}

/// Read a request body of at most `limit` bytes (413 past it, checked on
/// the declared length first and on the bytes as they arrive).
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over the {limit}-byte limit; nothing was done: send fewer commands per request"),
        )
        .with_detail(serde_json::json!({ "limit": limit }))
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// What every handler extracts: the shared [`Api`] state.
pub(crate) type ApiData = web::Data<Api>;
