"""kafka-python's KafkaAdminClient against a metawal cluster's Kafka front.

Run by tests/processes/kafka_clients.rs (never by hand in CI):

    admin_client.py STEP BOOTSTRAP [SSL_CAFILE]

STEP `admin`: create topics (counts, explicit assignments), list, describe,
grow one, delete one, describe the cluster and the quorum, and check the
error code of each refusal. STEP `after-failover`: create one more topic
(the controller died: the client finds the new one). Each step prints one
line of JSON (what the Rust side checks against the nodes) and exits
non-zero with the reason on any surprise.
"""

import json
import sys

from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)


def client(bootstrap, cafile):
    extra = {}
    if cafile:
        extra = dict(security_protocol="SSL", ssl_cafile=cafile, ssl_check_hostname=False)
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=15000,
        client_id="metawal-test",
        **extra,
    )


def expect_error(what, error, f):
    try:
        f()
    except error:
        return
    except Exception as e:  # noqa: BLE001 - report what came instead
        sys.exit(f"{what}: expected {error.__name__}, got {type(e).__name__}: {e}")
    sys.exit(f"{what}: expected {error.__name__}, got success")


def check(what, ok, detail):
    if not ok:
        sys.exit(f"{what}: {detail}")


def admin(a):
    a.create_topics([NewTopic("orders", num_partitions=3, replication_factor=2)])
    a.create_topics([NewTopic("payments", replica_assignments={0: [1, 2], 1: [2, 3], 2: [3, 1]})])
    topics = sorted(a.list_topics())
    check("list", {"orders", "payments"} <= set(topics), topics)

    described = {t["name"]: t for t in a.describe_topics(["orders", "payments"])}
    for name, n in (("orders", 3), ("payments", 3)):
        t = described[name]
        check(f"describe {name}", t["error_code"] == 0 and len(t["partitions"]) == n, t)
    pay = sorted(described["payments"]["partitions"], key=lambda p: p["partition_index"])
    check("explicit assignment", [p["replica_nodes"] for p in pay] == [[1, 2], [2, 3], [3, 1]], pay)
    check("leader is the first replica", [p["leader_id"] for p in pay] == [1, 2, 3], pay)

    a.create_partitions({"orders": NewPartitions(5)})
    grown = a.describe_topics(["orders"])[0]
    check("create_partitions", len(grown["partitions"]) == 5, grown)

    # Refusals, with the code a Kafka controller sends.
    expect_error("duplicate", TopicAlreadyExistsError,
                 lambda: a.create_topics([NewTopic("orders", 1, 1)]))
    expect_error("replication factor over the brokers", InvalidReplicationFactorError,
                 lambda: a.create_topics([NewTopic("too-wide", 1, 9)]))
    expect_error("bad name", InvalidTopicError,
                 lambda: a.create_topics([NewTopic("no/slash", 1, 1)]))
    expect_error("shrink", InvalidPartitionsError,
                 lambda: a.create_partitions({"orders": NewPartitions(2)}))
    expect_error("delete unknown", UnknownTopicOrPartitionError,
                 lambda: a.delete_topics(["never-created"]))

    a.create_topics([NewTopic("scratch", 1, 1)])
    a.delete_topics(["scratch"])
    check("delete", "scratch" not in a.list_topics(), a.list_topics())

    cluster = a.describe_cluster()
    brokers = sorted(b["broker_id"] for b in cluster["brokers"])
    check("describe_cluster brokers", brokers == [1, 2, 3], cluster)
    quorum = a.describe_metadata_quorum()
    part = quorum["topics"][0]["partitions"][0]
    voters = sorted(v["replica_id"] for v in part["current_voters"])
    check("quorum voters", voters == [1, 2, 3], quorum)
    check("quorum leader", part["leader_id"] == cluster["controller_id"], (part, cluster))
    # Every voter's log end is known: the leader's figures, whichever node
    # answered (a follower forwards the request to the leader).
    ends = [v["log_end_offset"] for v in part["current_voters"]]
    check("quorum log ends", all(e >= 1 for e in ends), quorum)
    return {
        "topics": sorted(a.list_topics()),
        "controller": cluster["controller_id"],
        "quorum_leader": part["leader_id"],
        "high_watermark": part["high_watermark"],
    }


def after_failover(a):
    a.create_topics([NewTopic("after-failover", num_partitions=2, replication_factor=2)])
    cluster = a.describe_cluster()
    return {"topics": sorted(a.list_topics()), "controller": cluster["controller_id"]}


def main():
    step, bootstrap = sys.argv[1], sys.argv[2]
    cafile = sys.argv[3] if len(sys.argv) > 3 else None
    a = client(bootstrap, cafile)
    try:
        out = {"admin": admin, "after-failover": after_failover}[step](a)
    finally:
        a.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
