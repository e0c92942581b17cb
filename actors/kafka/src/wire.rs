//! The wire: one request frame in, its decoded header and body out; one
//! response body in, its frame out. Pure (no node, no socket), so a
//! proptest can feed it anything.
//!
//! Why a file of its own: this is where bytes from the network become
//! typed requests, and every way they can be wrong is decided here — a
//! short or garbled header, an API key this front does not serve, a
//! version outside the range it advertises, a body that does not decode.
//! Each is a [`WireError`]; the connection answers the one case Kafka
//! answers (an `ApiVersions` request of a version above the range: a v0
//! answer with `UNSUPPORTED_VERSION` and the ranges, KIP-511) and closes
//! on the others, as a Kafka broker does.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, RequestKind};
use kafka_protocol::messages::{ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;

/// The API keys this front serves, each with every version the
/// `kafka-protocol` crate knows (what `ApiVersions` advertises).
///
/// `DescribeAcls` is served (metawal has no ACLs: the answer is an empty
/// list): kafka-python infers a broker's Kafka version from the keys it
/// advertises, and without it takes the cluster for Kafka 1.0 and refuses
/// to send a `CreateTopics` with explicit replica assignments.
pub const SERVED: [ApiKey; 8] = [
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::DescribeCluster,
    ApiKey::DescribeQuorum,
    ApiKey::DescribeAcls,
];

/// Bytes of the header fields every request version starts with: api key
/// (i16), api version (i16), correlation id (i32).
const FIXED_HEADER_BYTES: usize = 8;

/// Why a request frame cannot be served. The connection logs it and
/// closes (nothing is answered: the client cannot be trusted to parse an
/// answer to what it did not mean to send).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than any request header holds.
    #[error("a {len}-byte frame is shorter than any request header ({FIXED_HEADER_BYTES} bytes)")]
    Short {
        /// The frame's length.
        len: usize,
    },
    /// An API key Kafka does not define.
    #[error("unknown API key {key}")]
    UnknownKey {
        /// The key.
        key: i16,
    },
    /// A key Kafka defines that this front does not serve (and does not
    /// advertise).
    #[error("API {key:?} is not served by metawal's Kafka front")]
    NotServed {
        /// The key.
        key: ApiKey,
    },
    /// A version outside the advertised range (other than `ApiVersions`,
    /// which is answered).
    #[error("{key:?} version {version} is outside the supported range {min}..={max}")]
    UnsupportedVersion {
        /// The key.
        key: ApiKey,
        /// The version asked for.
        version: i16,
        /// The lowest supported.
        min: i16,
        /// The highest supported.
        max: i16,
    },
    /// The header or the body does not decode.
    #[error("{key:?} v{version}: malformed {part}: {reason}")]
    Malformed {
        /// The key.
        key: ApiKey,
        /// The version.
        version: i16,
        /// "header" or "body".
        part: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// A response did not encode (a bug of this front: a field set that
    /// the version cannot carry).
    #[error("cannot encode the {key:?} v{version} response: {reason}")]
    Encode {
        /// The key.
        key: ApiKey,
        /// The version.
        version: i16,
        /// What the encoder said.
        reason: String,
    },
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// The API.
    pub key: ApiKey,
    /// Its version.
    pub version: i16,
    /// The header (correlation id, client id).
    pub header: RequestHeader,
    /// The body, or `None` for an `ApiVersions` request of a version above
    /// the supported range (answered at v0 with `UNSUPPORTED_VERSION`).
    pub body: Option<RequestKind>,
}

/// Decode one request frame (its 4-byte length already taken off).
pub fn decode(frame: Bytes) -> Result<Request, WireError> {
    if frame.len() < FIXED_HEADER_BYTES {
        return Err(WireError::Short { len: frame.len() });
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|()| WireError::UnknownKey { key: raw_key })?;
    if !SERVED.contains(&key) {
        return Err(WireError::NotServed { key });
    }
    let range = key.valid_versions();
    let too_new_api_versions = key == ApiKey::ApiVersions && version > range.max;
    if !too_new_api_versions && (version < range.min || version > range.max) {
        return Err(WireError::UnsupportedVersion {
            key,
            version,
            min: range.min,
            max: range.max,
        });
    }
    let malformed = |part, reason: String| WireError::Malformed {
        key,
        version,
        part,
        reason,
    };
    let mut rest = frame;
    // A version above the range has an unknown header layout: KIP-511
    // says read the v0 header fields only (key, version, correlation id).
    let header_version = if too_new_api_versions {
        1
    } else {
        key.request_header_version(version)
    };
    let header = RequestHeader::decode(&mut rest, header_version)
        .map_err(|e| malformed("header", format!("{e:#}")))?;
    if too_new_api_versions {
        return Ok(Request {
            key,
            version,
            header,
            body: None,
        });
    }
    let body = RequestKind::decode(key, &mut rest, version)
        .map_err(|e| malformed("body", format!("{e:#}")))?;
    Ok(Request {
        key,
        version,
        header,
        body: Some(body),
    })
}

/// The `ApiVersions` answer: every served key with its version range.
pub fn api_versions(error: Option<ResponseError>) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_api_keys(
            SERVED
                .iter()
                .map(|k| {
                    let r = k.valid_versions();
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(r.min)
                        .with_max_version(r.max)
                })
                .collect(),
        )
}

/// Encode `response` to `request`: the frame's bytes after its length
/// (the codec writes the length). An `ApiVersions` request of an
/// unsupported version is answered at v0.
pub fn encode(request: &Request, response: ResponseKind) -> Result<Bytes, WireError> {
    let version = if request.body.is_none() {
        0
    } else {
        request.version
    };
    let err = |e: String| WireError::Encode {
        key: request.key,
        version,
        reason: e,
    };
    let mut out = BytesMut::with_capacity(256);
    ResponseHeader::default()
        .with_correlation_id(request.header.correlation_id)
        .encode(&mut out, response.header_version(version))
        .map_err(|e| err(e.to_string()))?;
    response
        .encode(&mut out, version)
        .map_err(|e| err(e.to_string()))?;
    Ok(out.freeze())
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
