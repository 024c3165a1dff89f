//! Control benchmark: front ends attached to a real node over its local socket, and a member's
//! commands over the tunnel (real nodes on 127.0.0.1, real SQLite files). Prints figures;
//! asserts nothing about time.
//!
//! 1. Attach: connect, hello, welcome (what every `ferry` command pays before its work).
//! 2. A local command's round trip (`status`), one front end, one call at a time.
//! 3. Events one attached front end takes: the node renames a library as fast as it can (each
//!    a SQLite write and a `library` event), the front end reads them.
//! 4. A member's command: round trip inside an open session, and a whole `remote` command
//!    (a tunnel stream opened, membership proven both ways, the command run, the answer back).
//! 5. The node's memory (its own process: this binary re-run as `serve`) with 0 and 100
//!    front ends attached, each subscribed to events.
//!
//! `cargo run --release -p ferry-core --example control_bench`

#[path = "../tests/support/members.rs"]
mod members;

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_core::control::local::{Client, Heard};
use ferry_core::control::{remote, Command, Reply};
use ferry_core::{Event, Node, NodeConfig};
use members::{link, shared_library, start};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

async fn attachable(data: &Path) -> Res<Node> {
    let cfg = NodeConfig {
        name: Some("bench".into()),
        listen: "127.0.0.1:0".parse()?,
        discovery: false,
        attachable: true,
        ..NodeConfig::new(data)
    };
    Ok(Node::start(cfg).await?)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        // The node alone in a process, for its memory.
        let node = attachable(Path::new(&args[2])).await?;
        println!("ready");
        tokio::signal::ctrl_c().await?;
        node.shutdown().await;
        return Ok(());
    }
    let t = tempfile::tempdir()?;
    let a = attachable(&t.path().join("a")).await?;
    let dir = a.data_dir().to_path_buf();

    // 1. Attach.
    let mut attach = vec![];
    for _ in 0..300 {
        let t0 = Instant::now();
        let c = Client::attach(&dir, false).await?.ok_or("no node")?;
        attach.push(t0.elapsed());
        drop(c);
    }
    println!(
        "attach (connect, hello, welcome): median {:?}, p99 {:?} over 300 (target <= 20 ms)",
        median(attach.clone()),
        pct(&attach, 0.99)
    );

    // 2. Round trip.
    let c = Client::attach(&dir, false).await?.ok_or("no node")?;
    let mut rtt = vec![];
    let t0 = Instant::now();
    for _ in 0..5000 {
        let t1 = Instant::now();
        c.call(Command::Status).await?;
        rtt.push(t1.elapsed());
    }
    println!(
        "local command round trip (status): median {:?}, p99 {:?}; {:.0} calls/s one at a time",
        median(rtt.clone()),
        pct(&rtt, 0.99),
        5000.0 / t0.elapsed().as_secs_f64()
    );

    // 3. Events.
    let Reply::Library { library } = c
        .call(Command::CreateLibrary {
            name: "Bench".into(),
        })
        .await?
    else {
        return Err("no library".into());
    };
    let listener = Client::attach(&dir, true).await?.ok_or("no node")?;
    let n = 20_000;
    let maker = {
        let c = std::sync::Arc::new(Client::attach(&dir, false).await?.ok_or("no node")?);
        let id = library.id.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            // Eight callers at once: the node makes events as fast as its database lets it.
            let mut callers = tokio::task::JoinSet::new();
            for k in 0..8 {
                let (c, id) = (c.clone(), id.clone());
                callers.spawn(async move {
                    for i in 0..n / 8 {
                        let name = format!("Bench {k}.{i}");
                        let _ = c
                            .call(Command::RenameLibrary {
                                library: id.clone(),
                                name,
                            })
                            .await;
                    }
                });
            }
            while callers.join_next().await.is_some() {}
            t0.elapsed()
        })
    };
    let t0 = Instant::now();
    let (mut got, mut lagged) = (0u64, 0u64);
    while got + lagged < n as u64 {
        match tokio::time::timeout(Duration::from_secs(10), listener.next()).await {
            Ok(Heard::Event(e)) if matches!(*e, Event::Library { .. }) => got += 1,
            Ok(Heard::Event(_)) => {}
            Ok(Heard::Lagged(m)) => lagged += m,
            Ok(Heard::Closed(why)) => return Err(why.into()),
            Err(_) => break,
        }
    }
    let took = t0.elapsed();
    let made = maker.await?;
    println!(
        "events: {n} made in {:.2} s ({:.0}/s, each a SQLite write); one attached front end read {got} ({:.0}/s), missed {lagged}",
        made.as_secs_f64(),
        n as f64 / made.as_secs_f64(),
        got as f64 / took.as_secs_f64()
    );
    drop(listener);
    drop(c);
    a.shutdown().await;

    // 4. A member's commands.
    let (da, db) = (t.path().join("ma"), t.path().join("mb"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta")]);
    let ma = start(&da, "alpha").await;
    let mb = start(&db, "beta").await;
    link(&mb, &ma).await;
    let session = remote::open(mb.libraries(), &ma.id(), &lib).await?;
    let mut inside = vec![];
    for _ in 0..2000 {
        let t1 = Instant::now();
        session
            .call(Command::Locations { library: lib.hex() })
            .await?;
        inside.push(t1.elapsed());
    }
    let mut whole = vec![];
    for _ in 0..200 {
        let t1 = Instant::now();
        mb.execute(Command::Remote {
            node: "alpha".into(),
            library: None,
            command: Box::new(Command::Status),
        })
        .await?;
        whole.push(t1.elapsed());
    }
    println!(
        "a member's command on loopback: {:?} median inside an open session (p99 {:?}); a whole `remote` command (tunnel stream, membership proofs, command) {:?} median (p99 {:?})",
        median(inside.clone()),
        pct(&inside, 0.99),
        median(whole.clone()),
        pct(&whole, 0.99)
    );
    drop(session);
    ma.shutdown().await;
    mb.shutdown().await;

    // 5. Memory of a node process with 100 front ends attached.
    let served = t.path().join("served");
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg(&served)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = None;
    while first.is_none() {
        first = Client::attach(&served, true).await.ok().flatten();
        if Instant::now() > deadline {
            return Err("the node process did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(pid);
    let mut front = vec![];
    for _ in 0..100 {
        front.push(Client::attach(&served, true).await?.ok_or("no node")?);
    }
    for f in &front {
        f.call(Command::Status).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with = rss_kib(pid);
    println!(
        "node process RSS: {:.1} MiB alone, {:.1} MiB with 100 front ends attached and subscribed ({:.0} KiB each)",
        idle as f64 / 1024.0,
        with as f64 / 1024.0,
        (with.saturating_sub(idle)) as f64 / 100.0
    );
    drop(front);
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}
