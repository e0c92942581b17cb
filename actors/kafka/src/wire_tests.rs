//! Bytes from the network: every request decodes to a served request or a
//! typed refusal, never a panic.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

use super::*;

/// A request header of `key` at `version` (correlation id 7), with
/// `client_id` if given.
fn header(key: ApiKey, version: i16, client_id: Option<&'static str>) -> BytesMut {
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(client_id.map(StrBytes::from_static_str))
        .encode(&mut out, key.request_header_version(version))
        .unwrap();
    out
}

/// A request frame (no length prefix) of `key` at `version`.
fn frame(key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
    let mut out = header(key, version, Some("test"));
    body.encode(&mut out, version).unwrap();
    out.freeze()
}

#[test]
fn a_metadata_request_decodes_and_its_answer_encodes() {
    let f = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
    let r = decode(f).unwrap();
    assert_eq!(
        (r.key, r.version, r.header.correlation_id),
        (ApiKey::Metadata, 12, 7)
    );
    assert!(matches!(r.body, Some(RequestKind::Metadata(_))));
    let ok = encode(
        &r,
        kafka_protocol::messages::MetadataResponse::default().into(),
    )
    .unwrap();
    assert_eq!(&ok[..4], &7i32.to_be_bytes(), "the correlation id first");
}

#[test]
fn api_versions_above_the_range_gets_a_v0_answer_with_the_ranges() {
    let mut raw = BytesMut::new();
    raw.put_i16(ApiKey::ApiVersions as i16);
    raw.put_i16(99);
    raw.put_i32(42);
    raw.put_i16(-1); // null client id
    raw.put_slice(&[0xde, 0xad]); // a body of a version nobody knows
    let r = decode(raw.freeze()).unwrap();
    assert!(r.body.is_none());
    let answer = encode(
        &r,
        api_versions(Some(kafka_protocol::ResponseError::UnsupportedVersion)).into(),
    )
    .unwrap();
    // v0: correlation id, error code 35, then the array of ranges.
    assert_eq!(&answer[..4], &42i32.to_be_bytes());
    assert_eq!(&answer[4..6], &35i16.to_be_bytes());
    let n = i32::from_be_bytes([answer[6], answer[7], answer[8], answer[9]]);
    assert_eq!(n as usize, SERVED.len());
}

#[test]
fn refusals_are_typed() {
    assert!(matches!(
        decode(Bytes::from_static(&[0, 3])),
        Err(WireError::Short { len: 2 })
    ));
    let mut unknown = BytesMut::new();
    unknown.put_i16(9999);
    unknown.put_i16(0);
    unknown.put_i32(1);
    assert!(matches!(
        decode(unknown.freeze()),
        Err(WireError::UnknownKey { key: 9999 })
    ));
    let produce = frame(
        ApiKey::Produce,
        9,
        &kafka_protocol::messages::ProduceRequest::default(),
    );
    assert!(matches!(
        decode(produce),
        Err(WireError::NotServed {
            key: ApiKey::Produce
        })
    ));
    let mut old = BytesMut::new();
    old.put_i16(ApiKey::CreateTopics as i16);
    old.put_i16(0);
    old.put_i32(1);
    old.put_i16(-1);
    assert!(matches!(
        decode(old.freeze()),
        Err(WireError::UnsupportedVersion { version: 0, .. })
    ));
    // A body cut short.
    let mut f = frame(ApiKey::Metadata, 12, &MetadataRequest::default()).to_vec();
    f.truncate(f.len() - 2);
    assert!(matches!(
        decode(Bytes::from(f)),
        Err(WireError::Malformed { part: "body", .. })
    ));
}

/// A request header of `key` at `version` followed by `body` bytes as given.
fn raw(key: ApiKey, version: i16, body: &[u8]) -> Bytes {
    let mut out = header(key, version, None);
    out.put_slice(body);
    out.freeze()
}

/// A count of array elements that cannot fit in the bytes left is refused
/// before anything is allocated. kafka-protocol 0.18.0 sized a `Vec` by
/// it, so these ~20-byte frames asked for 40-200 GB and aborted the
/// process (found by `mutated_requests_never_panic`; fixed in the patched
/// copy, actors/kafka/vendor/kafka-protocol/METAWAL.md).
#[test]
fn an_array_count_over_the_bytes_left_is_refused_not_allocated() {
    // Flexible version: a compact array of topics, count u32::MAX - 1.
    let v = ApiKey::DeleteTopics.valid_versions().max;
    let f = raw(
        ApiKey::DeleteTopics,
        v,
        &[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0],
    );
    let e = decode(f).unwrap_err();
    assert!(
        matches!(&e, WireError::Malformed { part: "body", reason, .. } if reason.contains("bytes left")),
        "{e}"
    );
    // Classic version: an i32 array of topics, count i32::MAX.
    let f = raw(ApiKey::Metadata, 4, &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1]);
    let e = decode(f).unwrap_err();
    assert!(
        matches!(&e, WireError::Malformed { part: "body", reason, .. } if reason.contains("bytes left")),
        "{e}"
    );
    // Nested: CreateTopics with one topic whose assignments claim 2^31 - 1.
    let mut body = BytesMut::new();
    body.put_i32(1); // topics
    body.put_i16(1); // name "a"
    body.put_u8(b'a');
    body.put_i32(1); // partitions
    body.put_i16(1); // replication factor
    body.put_i32(i32::MAX); // assignments
    body.put_i32(0);
    let f = raw(ApiKey::CreateTopics, 4, &body);
    let e = decode(f).unwrap_err();
    assert!(
        matches!(&e, WireError::Malformed { part: "body", reason, .. } if reason.contains("bytes left")),
        "{e}"
    );
}

/// A frame of `key` at `version` with every array the served request has
/// filled in (so mutations hit element counts, not only empty arrays), or
/// the empty request where this version cannot carry them.
fn populated(key: ApiKey, version: i16) -> Bytes {
    use kafka_protocol::messages::{
        create_partitions_request as cp, create_topics_request as ct, delete_topics_request as dt,
        describe_quorum_request as dq, metadata_request as md, BrokerId, TopicName,
    };
    let name = || TopicName(StrBytes::from_static_str("t"));
    let mut out = header(key, version, Some("test"));
    let body = match key {
        ApiKey::Metadata => md::MetadataRequest::default()
            .with_topics(Some(vec![
                md::MetadataRequestTopic::default().with_name(Some(name()))
            ]))
            .encode(&mut out, version),
        ApiKey::CreateTopics => ct::CreateTopicsRequest::default()
            .with_topics(vec![ct::CreatableTopic::default()
                .with_name(name())
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(vec![ct::CreatableReplicaAssignment::default()
                    .with_broker_ids(vec![BrokerId(1), BrokerId(2)])])
                .with_configs(vec![ct::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("cleanup.policy"))
                    .with_value(Some(StrBytes::from_static_str("compact")))])])
            .encode(&mut out, version),
        ApiKey::DeleteTopics if version >= 6 => dt::DeleteTopicsRequest::default()
            .with_topics(vec![dt::DeleteTopicState::default().with_name(Some(name()))])
            .encode(&mut out, version),
        ApiKey::DeleteTopics => dt::DeleteTopicsRequest::default()
            .with_topic_names(vec![name(), name()])
            .encode(&mut out, version),
        ApiKey::CreatePartitions => cp::CreatePartitionsRequest::default()
            .with_topics(vec![cp::CreatePartitionsTopic::default()
                .with_name(name())
                .with_count(3)
                .with_assignments(Some(vec![
                    cp::CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]),
                ]))])
            .encode(&mut out, version),
        ApiKey::DescribeQuorum => dq::DescribeQuorumRequest::default()
            .with_topics(vec![dq::TopicData::default()
                .with_topic_name(name())
                .with_partitions(vec![dq::PartitionData::default()])])
            .encode(&mut out, version),
        _ => {
            return frame(
                key,
                version,
                &kafka_protocol::messages::ApiVersionsRequest::default(),
            )
        }
    };
    match body {
        Ok(()) => out.freeze(),
        // A field this version does not have: the empty request instead.
        Err(_) => frame(
            key,
            version,
            &kafka_protocol::messages::ApiVersionsRequest::default(),
        ),
    }
}

proptest! {
    /// A filled-in served request at any of its versions, with bytes
    /// flipped, cut or appended: decoded or refused, never a panic or an
    /// abort (kafka-protocol 0.18.0 aborted on a large element count).
    #[test]
    fn mutated_full_requests_never_panic(
        key in prop::sample::select(SERVED.to_vec()),
        version_at in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let range = key.valid_versions();
        let span = (range.max - range.min) as usize + 1;
        let version = range.min + version_at.index(span) as i16;
        let mut bytes = populated(key, version).to_vec();
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] ^= b;
        }
        let keep = bytes.len() - cut.index(bytes.len() / 4 + 1);
        bytes.truncate(keep);
        if let Ok(r) = decode(Bytes::from(bytes)) {
            let _ = encode(&r, api_versions(None).into());
        }
    }

    /// Anything at all: decoded or refused, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(Bytes::from(bytes));
    }

    /// A served request with bytes flipped, cut or appended: decoded or
    /// refused, never a panic; a decoded one's answer encodes or is refused.
    #[test]
    fn mutated_requests_never_panic(
        key in prop::sample::select(SERVED.to_vec()),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let version = key.valid_versions().max;
        let body: Bytes = match key {
            ApiKey::Metadata => frame(key, version, &MetadataRequest::default()),
            ApiKey::CreateTopics => frame(key, version, &kafka_protocol::messages::CreateTopicsRequest::default()),
            ApiKey::DeleteTopics => frame(key, version, &kafka_protocol::messages::DeleteTopicsRequest::default()),
            ApiKey::CreatePartitions => frame(key, version, &kafka_protocol::messages::CreatePartitionsRequest::default()),
            ApiKey::DescribeCluster => frame(key, version, &kafka_protocol::messages::DescribeClusterRequest::default()),
            ApiKey::DescribeQuorum => frame(key, version, &kafka_protocol::messages::DescribeQuorumRequest::default()),
            ApiKey::DescribeAcls => frame(key, version, &kafka_protocol::messages::DescribeAclsRequest::default()),
            _ => frame(key, version, &kafka_protocol::messages::ApiVersionsRequest::default()),
        };
        let mut bytes = body.to_vec();
        for (i, b) in flips {
            if !bytes.is_empty() {
                let at = i.index(bytes.len());
                bytes[at] ^= b;
            }
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep);
        bytes.extend_from_slice(&tail);
        if let Ok(r) = decode(Bytes::from(bytes)) {
            let _ = encode(&r, api_versions(None).into());
        }
    }
}
