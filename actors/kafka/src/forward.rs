//! A follower's `DescribeQuorum`, asked of the leader's front.
//!
//! Only the leader knows each member's acknowledged log end and when it
//! last heard it; a Kafka broker forwards `DescribeQuorum` to the active
//! controller for the same reason, and clients (kafka-python's
//! `describe_metadata_quorum`) send it to whichever broker they like. So a
//! follower's front opens one connection to the leader's front (the
//! address the membership carries, TLS when the front is TLS), sends the
//! request as a Kafka client, and hands back the leader's answer. One
//! connection per request: the key is an operator's, not a hot path.
//!
//! Bounded: one [`FORWARD_TIMEOUT`] for the whole exchange, the answer at
//! most the front's frame limit. A forwarded request carries the client
//! id [`FORWARDED_CLIENT_ID`] and is never forwarded again (a node that
//! believes another leads while that one believes a third does must not
//! bounce it around). When the leader cannot be asked (none known, no
//! address, a TLS front without a client configuration, a refused or
//! failed exchange) the follower answers from what it knows itself (log
//! ends `-1`), and says why in an INFO line.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use kafka_protocol::messages::{
    ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use metawal::NodeId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::front::Front;

/// Longest a forwarded `DescribeQuorum` may take, connection and TLS
/// handshake included (the client's own timeout is usually 30 s or more).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// The client id of a request one front forwards to another.
pub const FORWARDED_CLIENT_ID: &str = "metawal-forward";

/// Why the leader could not be asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// No leader, or it has no Kafka address anyone knows of.
    #[error("no leader's Kafka address is known")]
    NoLeader,
    /// The front serves TLS but has no client configuration to reach
    /// another front with (`KafkaConfig::forward_tls`).
    #[error("the front serves TLS but has no TLS client configuration (forward_tls)")]
    NoClientTls,
    /// Connecting, the handshake, the write or the read failed.
    #[error("asking node {leader} at {addr}: {error}")]
    Io {
        /// The leader asked.
        leader: NodeId,
        /// Its front.
        addr: String,
        /// What failed.
        error: String,
    },
    /// The exchange took longer than allowed.
    #[error("node {leader} did not answer within {limit:?}")]
    Timeout {
        /// The leader asked.
        leader: NodeId,
        /// The time allowed.
        limit: Duration,
    },
    /// The answer is not the response to this request.
    #[error("node {leader}'s answer does not decode: {reason}")]
    BadAnswer {
        /// The leader asked.
        leader: NodeId,
        /// Why.
        reason: String,
    },
}

/// Whether `header` is that of a request another front forwarded.
pub(crate) fn is_forwarded(header: &RequestHeader) -> bool {
    header
        .client_id
        .as_ref()
        .is_some_and(|c| c.as_str() == FORWARDED_CLIENT_ID)
}

impl Front {
    /// The leader's answer to `request` (at `version`).
    pub(crate) async fn forward_describe_quorum(
        &self,
        request: &DescribeQuorumRequest,
        version: i16,
    ) -> Result<DescribeQuorumResponse, ForwardError> {
        self.ask_leader(ApiKey::DescribeQuorum, request, version, FORWARD_TIMEOUT)
            .await
    }

    /// The leader's answer to `request` (API `key` at `version`), within
    /// `limit` for the whole exchange.
    pub(crate) async fn ask_leader<Q: Encodable, R: Decodable>(
        &self,
        key: ApiKey,
        request: &Q,
        version: i16,
        limit: Duration,
    ) -> Result<R, ForwardError> {
        let leader = self
            .node()
            .leader()
            .filter(|&l| l != self.node_id())
            .ok_or(ForwardError::NoLeader)?;
        let membership = self.node().members_in_force();
        let (host, port) = self
            .broker_addr(&membership, leader)
            .ok_or(ForwardError::NoLeader)?;
        let exchange = self.exchange(leader, host, port, key, request, version);
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| ForwardError::Timeout { leader, limit })?
    }

    async fn exchange<Q: Encodable, R: Decodable>(
        &self,
        leader: NodeId,
        host: String,
        port: u16,
        key: ApiKey,
        request: &Q,
        version: i16,
    ) -> Result<R, ForwardError> {
        let addr = format!("{host}:{port}");
        let io = |error: String| ForwardError::Io {
            leader,
            addr: addr.clone(),
            error,
        };
        let frame = request_frame(key, request, version).map_err(io)?;
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| io(e.to_string()))?;
        let answer = match &self.config().tls {
            None => round_trip(tcp, frame, self.config().max_frame_bytes).await,
            Some(_) => {
                let client = self
                    .config()
                    .forward_tls
                    .clone()
                    .ok_or(ForwardError::NoClientTls)?;
                // Node certificates name `node-<id>.<cluster>`.
                let name = metawal_actors::tls::peer_name(leader, &self.node().config().cluster_id);
                let name = rustls::pki_types::ServerName::try_from(name)
                    .map_err(|e| io(format!("server name: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(client)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| io(format!("TLS: {e}")))?;
                round_trip(tls, frame, self.config().max_frame_bytes).await
            }
        }
        .map_err(|e| io(e.to_string()))?;
        decode_answer(key, answer, version)
            .map_err(|reason| ForwardError::BadAnswer { leader, reason })
    }
}

/// Correlation id of a forwarded request (one request per connection).
const CORRELATION_ID: i32 = 1;

/// The request frame (without its length), or why it cannot be encoded
/// (kafka-protocol reports that as an `anyhow::Error`: kept as its text).
fn request_frame<Q: Encodable>(key: ApiKey, request: &Q, version: i16) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(CORRELATION_ID)
        .with_client_id(Some(StrBytes::from_static_str(FORWARDED_CLIENT_ID)))
        .encode(&mut buf, key.request_header_version(version))
        .map_err(|e| format!("encoding the request header: {e}"))?;
    request
        .encode(&mut buf, version)
        .map_err(|e| format!("encoding the request: {e}"))?;
    Ok(buf.freeze())
}

/// Send one frame, read one (at most `max_frame_bytes`).
async fn round_trip<S>(stream: S, frame: Bytes, max_frame_bytes: usize) -> std::io::Result<Bytes>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame_bytes)
        .new_codec();
    let mut framed = Framed::new(stream, codec);
    framed.send(frame).await?;
    match framed.next().await {
        Some(answer) => Ok(answer?.freeze()),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        )),
    }
}

fn decode_answer<R: Decodable>(key: ApiKey, mut answer: Bytes, version: i16) -> Result<R, String> {
    let header = ResponseHeader::decode(&mut answer, key.response_header_version(version))
        .map_err(|e| format!("header: {e}"))?;
    if header.correlation_id != CORRELATION_ID {
        return Err(format!(
            "correlation id {} instead of {CORRELATION_ID}",
            header.correlation_id
        ));
    }
    R::decode(&mut answer, version).map_err(|e| format!("body: {e}"))
}
