//! One decoded request → one answer: the dispatch to the APIs, each of
//! which reads the node (its view, membership, leadership) or proposes to
//! it.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{
    DescribeAclsResponse, DescribeQuorumRequest, DescribeQuorumResponse, RequestKind, ResponseKind,
};
use kafka_protocol::ResponseError;
use metawal::NodeId;
use metawal_actors::{Node, Role};

use crate::config::KafkaConfig;
use crate::fence::FenceCache;
use crate::forward::is_forwarded;
use crate::wire::{self, Request, WireError};

/// The front of one node: cheap to clone (one per connection).
#[derive(Clone)]
pub(crate) struct Front {
    node: Node,
    config: Arc<KafkaConfig>,
    /// Shared by every connection of one `serve` (`fence.rs`).
    fence: Arc<FenceCache>,
}

impl Front {
    pub(crate) fn new(node: Node, config: KafkaConfig) -> Front {
        Front {
            node,
            config: Arc::new(config),
            fence: Arc::default(),
        }
    }

    pub(crate) fn fence_cache(&self) -> &FenceCache {
        &self.fence
    }

    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    pub(crate) fn node_id(&self) -> NodeId {
        self.node.id()
    }

    pub(crate) fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// The encoded answer to `request`.
    pub(crate) async fn answer(&self, request: &Request) -> Result<Bytes, WireError> {
        let v = request.version;
        // A request another front forwarded is answered from this node's
        // own knowledge (`fence.rs`, `forward.rs`).
        let may_ask = !is_forwarded(&request.header);
        let response: ResponseKind = match &request.body {
            // KIP-511: a version above the range is answered at v0.
            None => wire::api_versions(Some(ResponseError::UnsupportedVersion)).into(),
            Some(RequestKind::ApiVersions(_)) => wire::api_versions(None).into(),
            Some(RequestKind::Metadata(r)) => self.metadata(r, v, may_ask).await.into(),
            Some(RequestKind::CreateTopics(r)) => self.create_topics(r).await.into(),
            Some(RequestKind::DeleteTopics(r)) => self.delete_topics(r, v).await.into(),
            Some(RequestKind::CreatePartitions(r)) => self.create_partitions(r).await.into(),
            Some(RequestKind::DescribeCluster(_)) => self.describe_cluster(may_ask).await.into(),
            Some(RequestKind::DescribeQuorum(r)) => self.quorum(request, r).await.into(),
            // No ACLs: an empty list, no error.
            Some(RequestKind::DescribeAcls(_)) => DescribeAclsResponse::default().into(),
            Some(_) => {
                // `wire::decode` lets only the served keys through.
                return Err(WireError::NotServed { key: request.key });
            }
        };
        wire::encode(request, response)
    }

    /// `DescribeQuorum`: the leader's own answer; a follower's is the
    /// leader's, forwarded (`forward.rs`), or its own if that fails.
    async fn quorum(&self, request: &Request, r: &DescribeQuorumRequest) -> DescribeQuorumResponse {
        let v = request.version;
        if self.node().role() != Role::Leader && !is_forwarded(&request.header) {
            match self.forward_describe_quorum(r, v).await {
                Ok(answer) => return answer,
                Err(e) => tracing::info!(
                    node = self.node_id(),
                    error = %e,
                    "Kafka front: DescribeQuorum not forwarded to the leader; answering with this node's view (log ends -1)"
                ),
            }
        }
        self.describe_quorum(r, v).await
    }
}
