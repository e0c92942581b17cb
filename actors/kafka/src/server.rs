//! Sockets: the listener, one task per connection, and every bound a
//! client cannot push past — connections at once, frame size, idle and
//! half-open time, TLS handshake and write time.
//!
//! A connection serves its requests one at a time, in order (Kafka
//! clients pipeline and match answers by order and correlation id); the
//! socket's buffers bound what a client can queue behind the request in
//! service. A frame over the limit, a request that does not decode or a
//! key this front does not serve closes the connection with a log line,
//! as a Kafka broker does.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use metawal_actors::Node;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::config::{ConfigError, KafkaConfig, IO_TIMEOUT};
use crate::front::Front;
use crate::wire;

/// Why the front cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address cannot be bound.
    #[error("cannot listen for Kafka clients on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running front; [`KafkaServer::stop`] closes its listener (the
/// connections in service end with their next request).
#[derive(Debug)]
pub struct KafkaServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl KafkaServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting connections.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            // Err: the accept loop ended already.
            let _ = s.send(());
        }
    }
}

/// Listen on `config.listen` and serve `node`'s front, on the current
/// actix system (call it from within one).
pub async fn serve(node: Node, config: KafkaConfig) -> Result<KafkaServer, ServeError> {
    config.validate()?;
    let bind_err = |source| ServeError::Bind {
        addr: config.listen,
        source,
    };
    let inherited = match &config.listener {
        Some(l) => l.take().map_err(bind_err)?,
        None => None,
    };
    let listener = match inherited {
        Some(l) => TcpListener::from_std(l).map_err(bind_err)?,
        None => TcpListener::bind(config.listen).await.map_err(bind_err)?,
    };
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let (stop, mut stopped) = oneshot::channel();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let front = Front::new(node, config);
    tracing::info!(node = front.node_id(), %addr, tls = tls.is_some(), "Kafka front listening");
    actix_rt_spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = &mut stopped => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or similar: retried after a pause
                    // (bounded by the next accept's own outcome).
                    tracing::warn!(node = front.node_id(), error = %e, "Kafka front: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::warn!(node = front.node_id(), %peer, "Kafka front: connection limit reached; closing the new connection");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let front = front.clone();
            let tls = tls.clone();
            actix_rt_spawn(async move {
                let _permit = permit;
                match tls {
                    None => front.connection(stream, peer).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(IO_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => front.connection(s, peer).await,
                            Ok(Err(e)) => {
                                tracing::info!(node = front.node_id(), %peer, error = %e, "Kafka front: TLS handshake failed")
                            }
                            Err(_) => {
                                tracing::info!(node = front.node_id(), %peer, "Kafka front: TLS handshake timed out")
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(KafkaServer {
        addr,
        stop: Some(stop),
    })
}

/// Serve one connection a broker accepted on its own listener (after its
/// own TLS, if any) until the client closes it or breaks a rule; the
/// limits of `config` apply, its `listen` and `max_connections` do not.
pub async fn serve_connection<S>(node: Node, config: KafkaConfig, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Front::new(node, config).connection(stream, peer).await
}

fn actix_rt_spawn(f: impl std::future::Future<Output = ()> + 'static) {
    // The node's futures are not all `Send`: served on the actix system's
    // thread, beside the node's HTTP API.
    tokio::task::spawn_local(f);
}

impl Front {
    /// Serve requests on `stream` in order until it closes, idles out or
    /// breaks a rule.
    pub(crate) async fn connection<S>(&self, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let codec = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(self.config().max_frame_bytes)
            .new_codec();
        let mut framed = Framed::new(stream, codec);
        let node = self.node_id();
        loop {
            let next = tokio::time::timeout(self.config().idle_timeout, framed.next()).await;
            let frame = match next {
                Err(_) => {
                    tracing::debug!(node, %peer, "Kafka front: idle connection closed");
                    return;
                }
                Ok(None) => return,
                Ok(Some(Err(e))) => {
                    tracing::info!(node, %peer, error = %e, "Kafka front: bad frame; connection closed");
                    return;
                }
                Ok(Some(Ok(f))) => f.freeze(),
            };
            let request = match wire::decode(frame) {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(node, %peer, error = %e, "Kafka front: request refused; connection closed");
                    return;
                }
            };
            let answer = match self.answer(&request).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(node, %peer, error = %e, "Kafka front: cannot answer; connection closed");
                    return;
                }
            };
            match tokio::time::timeout(IO_TIMEOUT, framed.send(answer)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(node, %peer, error = %e, "Kafka front: write failed; connection closed");
                    return;
                }
                Err(_) => {
                    tracing::info!(node, %peer, "Kafka front: client not reading its answers; connection closed");
                    return;
                }
            }
        }
    }
}
