//! `Metadata`, `DescribeCluster`, `DescribeQuorum`: what a node knows,
//! read without proposing anything.
//!
//! Brokers are the cluster's members (voters and learners) with an
//! advertised Kafka address; the controller is the metadata leader. A
//! topic's partitions carry their replicas, leader and ISR as the log set
//! them. `DescribeQuorum` answers for the one partition metawal has,
//! `__cluster_metadata`-0: on the leader with each member's acknowledged
//! log end; a follower forwards it to the leader (`forward.rs`) and,
//! when that fails, answers with what it knows (the leader, the epoch,
//! its commit point as high watermark; log ends `-1`, unknown).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_quorum_response as dq;
use kafka_protocol::messages::metadata_response as md;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use metawal::membership::{split_host_port, Member, Membership};
use metawal::NodeId;
use metawal_actors::{MemberStatus, TopicView};

use crate::assign;
use crate::front::Front;

/// The one topic and partition of the metadata quorum, as Kafka names it.
pub(crate) const METADATA_TOPIC: &str = "__cluster_metadata";

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn broker(id: NodeId) -> BrokerId {
    BrokerId(i32::try_from(id).unwrap_or(i32::MAX))
}

fn brokers(ids: &[NodeId]) -> Vec<BrokerId> {
    ids.iter().map(|&i| broker(i)).collect()
}

impl Front {
    /// Each member with an advertised address and not fenced (`fence.rs`):
    /// (id, host, port). `may_ask_leader`: false for a request another
    /// front forwarded.
    async fn advertised_brokers(&self, may_ask_leader: bool) -> Vec<(NodeId, String, u16)> {
        let fenced = self.fenced(may_ask_leader).await;
        let membership = self.node().members_in_force();
        self.broker_ids()
            .into_iter()
            .filter(|&id| fenced.lists(id))
            .filter_map(|id| {
                let (h, p) = self.broker_addr(&membership, id)?;
                Some((id, h, p))
            })
            .collect()
    }

    /// Where clients reach node `id`'s front: the address the membership
    /// in force carries (every node reads the same log, so every node
    /// lists the same), else the one this node's configuration advertises
    /// (`--kafka-advertised`, `--peer-kafka`); `None`: the member has no
    /// front anyone knows of, and is not listed.
    pub(crate) fn broker_addr(&self, membership: &Membership, id: NodeId) -> Option<(String, u16)> {
        let logged = membership
            .member(id)
            .and_then(|(m, _)| split_host_port(&m.kafka_addr));
        logged
            .or_else(|| self.config().advertised(id))
            .map(|(h, p)| (h.to_string(), p))
    }

    fn controller(&self) -> BrokerId {
        self.node().leader().map_or(BrokerId(-1), broker)
    }

    fn cluster_id(&self) -> StrBytes {
        text(&self.node().config().cluster_id)
    }

    pub(crate) async fn metadata(
        &self,
        r: &MetadataRequest,
        v: i16,
        may_ask_leader: bool,
    ) -> MetadataResponse {
        let brokers = self.advertised_brokers(may_ask_leader).await;
        let view = self.node().view();
        // `None` (v1+), or an empty list at v0: every topic.
        let names: Vec<String> = match &r.topics {
            Some(ts) if !(ts.is_empty() && v == 0) => ts
                .iter()
                .filter_map(|t| {
                    t.name.as_ref().map(|n| n.0.to_string()).or_else(|| {
                        view.topics()
                            .into_iter()
                            .find(|n| assign::topic_id(n) == t.topic_id)
                    })
                })
                .collect(),
            _ => view.topics(),
        };
        let topics = names
            .iter()
            .map(|n| topic_metadata(n, view.topic(n).as_ref()))
            .collect();
        MetadataResponse::default()
            .with_brokers(
                brokers
                    .into_iter()
                    .map(|(id, h, p)| {
                        md::MetadataResponseBroker::default()
                            .with_node_id(broker(id))
                            .with_host(text(&h))
                            .with_port(i32::from(p))
                    })
                    .collect(),
            )
            .with_cluster_id(Some(self.cluster_id()))
            .with_controller_id(self.controller())
            .with_topics(topics)
    }

    pub(crate) async fn describe_cluster(&self, may_ask_leader: bool) -> DescribeClusterResponse {
        let brokers = self.advertised_brokers(may_ask_leader).await;
        DescribeClusterResponse::default()
            .with_cluster_id(self.cluster_id())
            .with_controller_id(self.controller())
            .with_brokers(
                brokers
                    .into_iter()
                    .map(|(id, h, p)| {
                        DescribeClusterBroker::default()
                            .with_broker_id(broker(id))
                            .with_host(text(&h))
                            .with_port(i32::from(p))
                    })
                    .collect(),
            )
    }

    pub(crate) async fn describe_quorum(
        &self,
        r: &DescribeQuorumRequest,
        v: i16,
    ) -> DescribeQuorumResponse {
        let members = self.node().members().await;
        let commit = self.node().commit_point();
        let epoch = self.node().epoch();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let replica = |m: &MemberStatus| {
            // Wall-clock ms of its last answer to the leader (Kafka's
            // "last fetch"), and the same if it is caught up now; -1 where
            // unknown (on a follower, or not heard yet).
            let heard_ms = m
                .heard_ago
                .map(|d| now_ms - i64::try_from(d.as_millis()).unwrap_or(i64::MAX).min(now_ms));
            let caught_up_ms = heard_ms.filter(|_| m.caught_up == Some(true));
            let mut s = dq::ReplicaState::default()
                .with_replica_id(broker(m.member.node_id))
                .with_log_end_offset(
                    m.acked_offset
                        .and_then(|o| i64::try_from(o).ok())
                        .unwrap_or(-1),
                )
                .with_last_fetch_timestamp(heard_ms.unwrap_or(-1))
                .with_last_caught_up_timestamp(caught_up_ms.unwrap_or(-1));
            if v >= 2 {
                s.replica_directory_id = uuid::Uuid::from_bytes(m.member.directory_id.0);
            }
            s
        };
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let part =
                            dq::PartitionData::default().with_partition_index(p.partition_index);
                        if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                            return part
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        }
                        part.with_leader_id(self.controller())
                            .with_leader_epoch(i32::try_from(epoch).unwrap_or(i32::MAX))
                            .with_high_watermark(i64::try_from(commit).unwrap_or(i64::MAX))
                            .with_current_voters(members.voters.iter().map(replica).collect())
                            .with_observers(members.learners.iter().map(replica).collect())
                    })
                    .collect();
                dq::TopicData::default()
                    .with_topic_name(TopicName(t.topic_name.0.clone()))
                    .with_partitions(partitions)
            })
            .collect();
        let mut response = DescribeQuorumResponse::default().with_topics(topics);
        if v >= 2 {
            // v2 names each voter's endpoints (only there: the field
            // cannot be encoded at v0 or v1).
            let membership = self.node().members_in_force();
            response.nodes = members
                .voters
                .iter()
                .chain(&members.learners)
                .filter_map(|m| self.quorum_node(&membership, &m.member))
                .collect();
        }
        response
    }

    fn quorum_node(&self, membership: &Membership, m: &Member) -> Option<dq::Node> {
        let (host, port) = self.broker_addr(membership, m.node_id)?;
        Some(
            dq::Node::default()
                .with_node_id(broker(m.node_id))
                .with_listeners(vec![dq::Listener::default()
                    .with_name(text("KAFKA"))
                    .with_host(text(&host))
                    .with_port(port)]),
        )
    }
}

fn topic_metadata(name: &str, topic: Option<&TopicView>) -> md::MetadataResponseTopic {
    let t = md::MetadataResponseTopic::default().with_name(Some(TopicName(text(name))));
    let Some(topic) = topic else {
        return t.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let part = md::MetadataResponsePartition::default()
                .with_partition_index(i32::try_from(i).unwrap_or(i32::MAX))
                .with_leader_id(p.leader.map_or(BrokerId(-1), broker))
                .with_leader_epoch(-1)
                .with_replica_nodes(brokers(&p.replicas))
                .with_isr_nodes(brokers(&p.isr));
            if p.leader.is_none() {
                part.with_error_code(ResponseError::LeaderNotAvailable.code())
            } else {
                part
            }
        })
        .collect();
    t.with_topic_id(assign::topic_id(name))
        .with_partitions(partitions)
}
