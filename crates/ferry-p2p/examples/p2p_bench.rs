//! Prints connection handshake time and ping round-trip time between two nodes on loopback.
//! Run: `cargo run --release -p ferry-p2p --example p2p_bench`. Figures, not assertions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_p2p::{DiscoveryConfig, Identity, NodeInfo, P2p, P2pConfig};

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!(
        "median {:.0} µs, p99 {:.0} µs, min {:.0} µs (n={})",
        us(v[v.len() / 2]),
        us(v[v.len() * 99 / 100]),
        us(v[0]),
        v.len()
    )
}

async fn node(name: &str) -> P2p {
    let cfg = P2pConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        info: NodeInfo {
            name: name.into(),
            ..Default::default()
        },
        discovery: DiscoveryConfig {
            enabled: false,
            interfaces: vec![],
        },
        ..Default::default()
    };
    P2p::start(Arc::new(Identity::generate().unwrap()), cfg, vec![])
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    let (a, b) = (node("a").await, node("b").await);
    let addr = b.local_addr().unwrap();
    let mut handshakes = vec![];
    for _ in 0..200 {
        let t = Instant::now();
        a.connect(addr, Some(b.id())).await.unwrap();
        handshakes.push(t.elapsed());
        if let Some(c) = a.connection(&b.id()) {
            c.close(0u32.into(), b"bench");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!(
        "handshake (QUIC + TLS 1.3 raw keys + hello), loopback: {}",
        stats(handshakes)
    );
    a.connect(addr, Some(b.id())).await.unwrap();
    let rtts = a.ping(&b.id(), 2000, Duration::ZERO).await.unwrap();
    println!("ping round trip, loopback, one stream: {}", stats(rtts));
    a.shutdown().await;
    b.shutdown().await;
}
