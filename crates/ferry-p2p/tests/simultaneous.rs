//! Two nodes that dial each other at once, as two discovering nodes do when they meet: the
//! connection a dial hands out must be the one both sides keep. Handing out the one that then
//! lost the tie-break cut whatever was opened on it: a fresh Spacedrop offer was interrupted
//! ("waiting for NAME to be reachable") and offered again. Real nodes on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use ferry_p2p::{Identity, NodeInfo, P2p, P2pConfig};

fn loopback(name: &str) -> P2pConfig {
    P2pConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        info: NodeInfo {
            name: name.into(),
            os: "linux".into(),
            version: "test".into(),
        },
        discovery: ferry_p2p::DiscoveryConfig {
            enabled: false,
            interfaces: vec![],
        },
        ..Default::default()
    }
}

async fn node(name: &str) -> P2p {
    P2p::start(
        Arc::new(Identity::generate().unwrap()),
        loopback(name),
        vec![],
    )
    .await
    .unwrap()
}

/// Dials, takes the connection `from` hands out for `to` right after, and pings over it (a
/// stream in use, as an offer waiting for its answer is): the connection, and whether the
/// pings went through.
async fn dial_and_use(from: &P2p, to: &P2p) -> (quinn::Connection, bool) {
    from.connect(to.local_addr().unwrap(), Some(to.id()))
        .await
        .unwrap();
    let conn = from.connection(&to.id()).expect("connected after the dial");
    let pinged = ferry_p2p::ping::ping(&conn, 3, Duration::from_millis(100)).await;
    (conn, pinged.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_hand_out_the_connection_both_keep() {
    let rounds = 30;
    let mut replaced = 0;
    for round in 0..rounds {
        let (a, b) = (node("alpha").await, node("beta").await);
        let (ca, cb) = tokio::join!(dial_and_use(&a, &b), dial_and_use(&b, &a));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (la, lb) = (
            a.connection(&b.id()).unwrap(),
            b.connection(&a.id()).unwrap(),
        );
        // Both keep the same connection: dialed by one of them, accepted by the other.
        assert_ne!(
            la.side().is_client(),
            lb.side().is_client(),
            "round {round}"
        );
        for ((handed, pinged), live) in [(&ca, &la), (&cb, &lb)] {
            if !pinged || handed.close_reason().is_some() || handed.stable_id() != live.stable_id()
            {
                replaced += 1;
            }
        }
        tokio::join!(a.shutdown(), b.shutdown());
    }
    println!("{rounds} rounds of simultaneous dials: {replaced} handed-out connections replaced");
    assert_eq!(replaced, 0);
}
