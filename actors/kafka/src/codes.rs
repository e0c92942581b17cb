//! metawal's errors as the Kafka error codes a Kafka controller sends for
//! the same situation, each with metawal's message (clients show it).

use kafka_protocol::ResponseError;
use metawal::state::ValidationError;
use metawal_actors::ProposeError;

/// A refusal: the Kafka code and the message clients show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: ResponseError,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(code: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// This node does not lead (`NOT_CONTROLLER`: the client refreshes
    /// `controller_id` and sends the request there).
    pub(crate) fn not_controller(
        node: metawal::NodeId,
        leader: Option<metawal::NodeId>,
    ) -> Refusal {
        let leader = leader.map_or("no leader is known yet".to_string(), |l| {
            format!("node {l} is")
        });
        Refusal::new(
            ResponseError::NotController,
            format!("node {node} is not the metadata leader; {leader}"),
        )
    }
}

/// The code for a command the metadata rules refuse.
pub(crate) fn validation(e: &ValidationError) -> Refusal {
    use ValidationError as V;
    // The front proposes a topic's commands as one batch: the command
    // refused inside it says what is wrong.
    if let V::InBatch { error, .. } = e {
        return validation(error);
    }
    let code = match e {
        V::EmptyTopicName
        | V::TopicNameTooLong { .. }
        | V::IllegalTopicNameChar { .. }
        | V::ReservedTopicName { .. } => ResponseError::InvalidTopicException,
        V::InvalidPartitionCount { .. }
        | V::PartitionCountNotIncreased { .. }
        | V::TooManyPartitions { .. } => ResponseError::InvalidPartitions,
        V::InvalidReplicationFactor { .. } => ResponseError::InvalidReplicationFactor,
        V::TopicExists { .. } => ResponseError::TopicAlreadyExists,
        V::UnknownTopic { .. } => ResponseError::UnknownTopicOrPartition,
        V::PartitionOutOfRange { .. }
        | V::EmptyReplicas { .. }
        | V::DuplicateReplica { .. }
        | V::TooManyReplicas { .. } => ResponseError::InvalidReplicaAssignment,
        _ => ResponseError::InvalidRequest,
    };
    Refusal::new(code, e.to_string())
}

/// The code for a proposal the node refused or could not finish.
pub(crate) fn propose(e: &ProposeError) -> Refusal {
    let code = match e {
        ProposeError::NotLeader { node, leader } => return Refusal::not_controller(*node, *leader),
        ProposeError::Invalid(v) => return validation(v),
        ProposeError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        ProposeError::NotEnoughReplicasAfterAppend { .. } => {
            ResponseError::NotEnoughReplicasAfterAppend
        }
        ProposeError::Timeout { .. } => ResponseError::RequestTimedOut,
        // The entry may or may not commit under the next leader: the
        // client retries on the new controller, and a retried creation
        // that did commit is answered `TOPIC_ALREADY_EXISTS` (as when a
        // Kafka controller fails over mid-request).
        ProposeError::LeadershipLost => ResponseError::NotController,
        ProposeError::TooLarge { .. } => ResponseError::InvalidRequest,
        ProposeError::Overloaded(_) => ResponseError::ThrottlingQuotaExceeded,
        _ => ResponseError::UnknownServerError,
    };
    Refusal::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_breaks_map_to_the_codes_a_kafka_controller_sends() {
        let cases = [
            (V::EmptyTopicName, ResponseError::InvalidTopicException),
            (
                V::TopicExists { name: "t".into() },
                ResponseError::TopicAlreadyExists,
            ),
            (
                V::UnknownTopic { name: "t".into() },
                ResponseError::UnknownTopicOrPartition,
            ),
            (
                V::InvalidPartitionCount { count: 0, max: 10 },
                ResponseError::InvalidPartitions,
            ),
        ];
        use ValidationError as V;
        for (e, code) in cases {
            let r = validation(&e);
            assert_eq!(r.code, code, "{e}");
            assert_eq!(r.message, e.to_string());
        }
        let exists = V::TopicExists { name: "t".into() };
        let in_batch = V::InBatch {
            index: 0,
            kind: "CreateTopic",
            error: Box::new(exists.clone()),
        };
        assert_eq!(validation(&in_batch), validation(&exists));
        let r = propose(&ProposeError::NotLeader {
            node: 2,
            leader: Some(1),
        });
        assert_eq!(r.code, ResponseError::NotController);
        assert!(r.message.contains("node 1 is"), "{}", r.message);
    }
}
