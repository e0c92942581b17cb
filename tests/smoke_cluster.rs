mod common;

use std::time::Duration;

use common::{fast_config, TestCluster};
use metawal_actors::{Acks, Command};

#[actix::test]
async fn smoke() {
    let c = TestCluster::start(3, &[3], fast_config()).await;
    c.wait_isr(3, Duration::from_secs(10)).await;
    let p = c
        .node(1)
        .propose(
            Command::CreateTopic {
                name: "t".into(),
                partition_count: 1,
                replication_factor: 1,
            },
            Acks::All,
        )
        .await
        .unwrap();
    assert_eq!(p.offset, 2);
    c.shutdown().await;
}
