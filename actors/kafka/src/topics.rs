//! `CreateTopics`, `DeleteTopics`, `CreatePartitions`: each topic is one
//! atomic `propose_batch` at `acks=all` on the leader, answered with the
//! Kafka code of its outcome. Topics of one request are independent (one
//! may fail while the others are created), as on a Kafka controller.

use std::time::Duration;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use metawal::{Command, NodeId};
use metawal_actors::{Acks, Role};

use crate::assign::{self, DEFAULT_PARTITIONS, DEFAULT_REPLICATION_FACTOR};
use crate::codes::{self, Refusal};
use crate::config::MAX_REQUEST_TIMEOUT;
use crate::front::Front;

/// What a topic's creation (or growth) will append, or why not.
struct Plan {
    commands: Vec<Command>,
    partitions: u32,
    factor: u32,
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The wait a client asks for, within [`MAX_REQUEST_TIMEOUT`] (0 or less:
/// the node's own request timeout, as for any proposal).
fn wait_of(timeout_ms: i32) -> Duration {
    u64::try_from(timeout_ms)
        .ok()
        .filter(|&ms| ms > 0)
        .map_or(MAX_REQUEST_TIMEOUT, |ms| {
            Duration::from_millis(ms).min(MAX_REQUEST_TIMEOUT)
        })
}

impl Front {
    /// The brokers a topic can be placed on: every member (voters and
    /// learners), by id.
    pub(crate) fn broker_ids(&self) -> Vec<NodeId> {
        let m = self.node().members_in_force();
        let mut ids: Vec<NodeId> = m.members().map(|(m, _)| m.node_id).collect();
        ids.sort_unstable();
        ids
    }

    /// `Err(NOT_CONTROLLER)` unless this node leads.
    fn leading(&self) -> Result<(), Refusal> {
        if self.node().role() == Role::Leader {
            Ok(())
        } else {
            Err(Refusal::not_controller(
                self.node_id(),
                self.node().leader(),
            ))
        }
    }

    /// Propose `commands` as one entry, `acks=all`, within `wait`.
    async fn commit(&self, commands: Vec<Command>, wait: Duration) -> Result<(), Refusal> {
        let proposal = self.node().propose_batch(commands, Acks::All);
        match tokio::time::timeout(wait, proposal).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(codes::propose(&e)),
            Err(_) => Err(Refusal::new(
                ResponseError::RequestTimedOut,
                format!("not committed within {wait:?}; the change may still be made: look before retrying"),
            )),
        }
    }

    /// Check `commands` against the committed state without proposing
    /// them (`validate_only`).
    async fn check(&self, commands: Vec<Command>) -> Result<(), Refusal> {
        let state = self
            .node()
            .state()
            .await
            .map_err(|e| Refusal::new(ResponseError::UnknownServerError, e.to_string()))?;
        state
            .validate(&Command::Batch { commands })
            .map_err(|e| codes::validation(&e))
    }

    pub(crate) async fn create_topics(&self, r: &CreateTopicsRequest) -> CreateTopicsResponse {
        let wait = wait_of(r.timeout_ms);
        let mut results = Vec::with_capacity(r.topics.len());
        let mut seen = std::collections::BTreeSet::new();
        for t in &r.topics {
            let name = t.name.0.to_string();
            let mut result = CreatableTopicResult::default().with_name(t.name.clone());
            let outcome = if !seen.insert(name.clone()) {
                Err(Refusal::new(
                    ResponseError::InvalidRequest,
                    format!("topic {name:?} is named twice in the request"),
                ))
            } else {
                match self.plan_create(&name, t) {
                    Err(e) => Err(e),
                    Ok(plan) => {
                        let done = if r.validate_only {
                            self.check(plan.commands).await
                        } else {
                            match self.leading() {
                                Err(e) => Err(e),
                                Ok(()) => self.commit(plan.commands, wait).await,
                            }
                        };
                        done.map(|()| (plan.partitions, plan.factor))
                    }
                }
            };
            match outcome {
                Ok((partitions, factor)) => {
                    result.topic_id = assign::topic_id(&name);
                    result.num_partitions = i32::try_from(partitions).unwrap_or(i32::MAX);
                    result.replication_factor = i16::try_from(factor).unwrap_or(i16::MAX);
                }
                Err(e) => {
                    tracing::info!(node = self.node_id(), topic = %name, code = ?e.code, reason = %e.message, "Kafka CreateTopics: refused");
                    result.error_code = e.code.code();
                    result.error_message = Some(text(&e.message));
                }
            }
            results.push(result);
        }
        CreateTopicsResponse::default().with_topics(results)
    }

    fn plan_create(
        &self,
        name: &str,
        t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    ) -> Result<Plan, Refusal> {
        if !t.configs.is_empty() {
            return Err(Refusal::new(
                ResponseError::InvalidConfig,
                "metawal keeps no topic configs: create the topic without them",
            ));
        }
        let brokers = self.broker_ids();
        let replicas = if t.assignments.is_empty() {
            let partitions = match t.num_partitions {
                -1 => DEFAULT_PARTITIONS,
                n => u32::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
                    Refusal::new(
                        ResponseError::InvalidPartitions,
                        format!(
                            "Number of partitions was set to an invalid non-positive value ({n})."
                        ),
                    )
                })?,
            };
            let factor = match t.replication_factor {
                -1 => DEFAULT_REPLICATION_FACTOR,
                f => u32::try_from(f).ok().filter(|&f| f > 0).ok_or_else(|| {
                    Refusal::new(
                        ResponseError::InvalidReplicationFactor,
                        format!("Replication factor must be larger than 0, or -1 to use the default value ({f})."),
                    )
                })?,
            };
            if partitions > metawal::state::MAX_PARTITIONS {
                return Err(Refusal::new(
                    ResponseError::InvalidPartitions,
                    format!(
                        "{partitions} partitions: at most {} per topic",
                        metawal::state::MAX_PARTITIONS
                    ),
                ));
            }
            assign::round_robin(name, 0, partitions, factor, &brokers)?
        } else {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                return Err(Refusal::new(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                ));
            }
            let mut given: Vec<_> = t.assignments.iter().collect();
            given.sort_by_key(|a| a.partition_index);
            let dense = given
                .iter()
                .enumerate()
                .all(|(i, a)| usize::try_from(a.partition_index).ok() == Some(i));
            if !dense {
                return Err(Refusal::new(
                    ResponseError::InvalidReplicaAssignment,
                    "partitions must be numbered 0, 1, 2, … without gaps or repeats",
                ));
            }
            let ids = given
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect();
            assign::explicit(ids, &brokers)?
        };
        let partitions = u32::try_from(replicas.len()).unwrap_or(u32::MAX);
        let factor = replicas.first().map_or(0, |r| r.len() as u32);
        let mut commands = vec![Command::CreateTopic {
            name: name.to_string(),
            partition_count: partitions,
            replication_factor: factor,
        }];
        commands.extend(assign::partition_commands(name, 0, replicas));
        Ok(Plan {
            commands,
            partitions,
            factor,
        })
    }

    pub(crate) async fn delete_topics(
        &self,
        r: &DeleteTopicsRequest,
        v: i16,
    ) -> DeleteTopicsResponse {
        let wait = wait_of(r.timeout_ms);
        // v6 names topics by name or id; earlier versions by name.
        let asked: Vec<(Option<String>, uuid::Uuid)> = if v >= 6 {
            r.topics
                .iter()
                .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
                .collect()
        } else {
            r.topic_names
                .iter()
                .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
                .collect()
        };
        let mut results = Vec::with_capacity(asked.len());
        for (name, id) in asked {
            let name = name.or_else(|| {
                self.node()
                    .view()
                    .topics()
                    .into_iter()
                    .find(|n| assign::topic_id(n) == id)
            });
            let mut result = DeletableTopicResult::default().with_topic_id(id);
            let outcome = match &name {
                None => Err(Refusal::new(
                    ResponseError::UnknownTopicId,
                    format!("no topic has id {id}"),
                )),
                Some(n) => match self.leading() {
                    Err(e) => Err(e),
                    Ok(()) => {
                        self.commit(vec![Command::DeleteTopic { name: n.clone() }], wait)
                            .await
                    }
                },
            };
            result.name = name.as_deref().map(|n| TopicName(text(n)));
            if let Err(e) = outcome {
                tracing::info!(node = self.node_id(), topic = ?name, code = ?e.code, reason = %e.message, "Kafka DeleteTopics: refused");
                result.error_code = e.code.code();
                result.error_message = Some(text(&e.message));
            }
            results.push(result);
        }
        DeleteTopicsResponse::default().with_responses(results)
    }

    pub(crate) async fn create_partitions(
        &self,
        r: &CreatePartitionsRequest,
    ) -> CreatePartitionsResponse {
        let wait = wait_of(r.timeout_ms);
        let mut results = Vec::with_capacity(r.topics.len());
        for t in &r.topics {
            let name = t.name.0.to_string();
            let mut result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let outcome = match self.plan_grow(&name, t) {
                Err(e) => Err(e),
                Ok(plan) if r.validate_only => self.check(plan.commands).await,
                Ok(plan) => match self.leading() {
                    Err(e) => Err(e),
                    Ok(()) => self.commit(plan.commands, wait).await,
                },
            };
            if let Err(e) = outcome {
                tracing::info!(node = self.node_id(), topic = %name, code = ?e.code, reason = %e.message, "Kafka CreatePartitions: refused");
                result.error_code = e.code.code();
                result.error_message = Some(text(&e.message));
            }
            results.push(result);
        }
        CreatePartitionsResponse::default().with_results(results)
    }

    fn plan_grow(
        &self,
        name: &str,
        t: &kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic,
    ) -> Result<Plan, Refusal> {
        let Some(topic) = self.node().view().topic(name) else {
            return Err(Refusal::new(
                ResponseError::UnknownTopicOrPartition,
                format!("unknown topic {name:?}"),
            ));
        };
        let current = u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX);
        let Some(count) = u32::try_from(t.count).ok().filter(|&c| c > current) else {
            return Err(Refusal::new(
                ResponseError::InvalidPartitions,
                format!(
                    "Topic currently has {current} partitions, which is higher than or equal to the requested {}.",
                    t.count
                ),
            ));
        };
        let added = count - current;
        let brokers = self.broker_ids();
        let replicas = match &t.assignments {
            Some(a) => {
                if a.len() != added as usize {
                    return Err(Refusal::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("{} assignments for the {added} partitions added", a.len()),
                    ));
                }
                assign::explicit(
                    a.iter()
                        .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                        .collect(),
                    &brokers,
                )?
            }
            None => assign::round_robin(name, current, added, topic.replication_factor, &brokers)?,
        };
        let mut commands = vec![Command::CreatePartitions {
            topic: name.to_string(),
            partition_count: count,
        }];
        commands.extend(assign::partition_commands(name, current, replicas));
        Ok(Plan {
            commands,
            partitions: count,
            factor: topic.replication_factor,
        })
    }
}
