//! `ferry`: a headless Ferry node and its commands. Human output by default; `--json` prints
//! one JSON object per line, each with a `type` field (the engine's events plus a few
//! command results, documented in README).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ferry_core::{Event, Node, NodeConfig, PeerSnapshot, Target};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: find nearby devices and send them files, verified end to end"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Global {
    /// Where the node keeps its identity and state.
    #[arg(long, global = true, env = "FERRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Display name shown to peers (default: the host name).
    #[arg(long, global = true, env = "FERRY_NAME")]
    name: Option<String>,
    /// UDP address to listen on.
    #[arg(long, global = true, env = "FERRY_LISTEN", default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Network interfaces mDNS may use, comma separated (default: all).
    #[arg(long, global = true, env = "FERRY_INTERFACES", value_delimiter = ',')]
    interfaces: Vec<String>,
    /// Turn LAN discovery (mDNS) off; reach peers with --connect.
    #[arg(long, global = true, env = "FERRY_NO_DISCOVERY")]
    no_discovery: bool,
    /// Keep a connection to this peer: host:port or FINGERPRINT@host:port (repeatable).
    #[arg(long, global = true, value_name = "ADDR")]
    connect: Vec<String>,
    /// One JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: print its identity, then peers as they appear, change and leave.
    /// Reads commands on stdin: `name NEW`, `peers`, `ping PEER`, `quit`.
    Node,
    /// List nearby peers (name, fingerprint, OS, addresses, state, RTT).
    Peers {
        /// How long to look for peers before printing.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Measure round-trip time to a peer: fingerprint (or prefix), name, host:port or FINGERPRINT@host:port.
    Ping {
        peer: String,
        #[arg(short, long, default_value_t = 4)]
        count: u32,
        #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
        /// How long to look for a peer given by name or fingerprint.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Print this node's identity.
    Id,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration '{s}' (try 2s or 500ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in '{s}' (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let json = cli.global.json;
    if let Err(e) = run(cli).await {
        if json {
            println!("{}", json!({"type": "error", "message": format!("{e:#}")}));
        } else {
            eprintln!("ferry: {e:#}");
        }
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let g = cli.global;
    let mut cfg = NodeConfig::new(
        g.data_dir
            .clone()
            .unwrap_or_else(NodeConfig::default_data_dir),
    );
    cfg.name = g.name.clone();
    cfg.listen = g.listen;
    cfg.discovery = !g.no_discovery;
    cfg.interfaces = g.interfaces.clone();
    for c in &g.connect {
        match c.parse::<Target>()? {
            Target::Addr { addr, pin } => cfg.connect.push((addr, pin)),
            Target::Query(q) => {
                bail!("--connect needs host:port or FINGERPRINT@host:port, not '{q}'")
            }
        }
    }
    let out = Out { json: g.json };
    let node = Node::start(cfg).await?;
    let result = match cli.command {
        Command::Node => run_node(&node, &out).await,
        Command::Peers { wait } => {
            tokio::time::sleep(wait).await;
            out.peers(&node.peers());
            Ok(())
        }
        Command::Ping {
            peer,
            count,
            interval,
            wait,
        } => ping(&node, &out, &peer, count, interval, wait).await,
        Command::Id => {
            out.event(&node.started_event());
            Ok(())
        }
    };
    node.shutdown().await;
    result
}

async fn run_node(node: &Node, out: &Out) -> Result<()> {
    let mut events = node.subscribe();
    out.event(&node.started_event());
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => out.event(&e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(n, "missed events"),
                Err(_) => return Ok(()),
            },
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => if !command(node, out, line.trim()).await { return Ok(()) },
                // No stdin (a service, or `< /dev/null`): keep running until a signal.
                _ => stdin_open = false,
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        }
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).context("installing a signal handler")
}

/// One line typed into a running `ferry node`. Returns false to stop.
async fn command(node: &Node, out: &Out, line: &str) -> bool {
    let (cmd, arg) = line
        .split_once(' ')
        .map(|(c, a)| (c, a.trim()))
        .unwrap_or((line, ""));
    match cmd {
        "" => {}
        "quit" | "exit" => return false,
        "name" if !arg.is_empty() => node.set_name(arg),
        "peers" => out.peers(&node.peers()),
        "ping" if !arg.is_empty() => {
            if let Err(e) = ping(node, out, arg, 1, Duration::ZERO, Duration::from_secs(2)).await {
                out.error(&e);
            }
        }
        _ => out.error(&anyhow::anyhow!(
            "unknown command '{line}' (name NEW, peers, ping PEER, quit)"
        )),
    }
    true
}

async fn ping(
    node: &Node,
    out: &Out,
    peer: &str,
    count: u32,
    interval: Duration,
    wait: Duration,
) -> Result<()> {
    let target: Target = peer.parse()?;
    let id = node.resolve(&target, wait).await?;
    let name = node.p2p().peer(&id).map(|p| p.name).unwrap_or_default();
    let rtts = node.ping(&id, count, interval).await?;
    for (seq, rtt) in rtts.iter().enumerate() {
        let ms = rtt.as_secs_f64() * 1000.0;
        if out.json {
            println!(
                "{}",
                json!({"type": "ping_reply", "peer": id, "name": name, "seq": seq, "rtt_ms": ms})
            );
        } else {
            println!(
                "reply from {name} ({}): seq={seq} time={ms:.3} ms",
                id.short()
            );
        }
    }
    let ms: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let (min, max) = ms
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
    let avg = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    if out.json {
        println!(
            "{}",
            json!({"type": "ping_summary", "peer": id, "count": ms.len(), "min_ms": min, "avg_ms": avg, "max_ms": max})
        );
    } else {
        println!(
            "{} replies, rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms",
            ms.len()
        );
    }
    Ok(())
}

struct Out {
    json: bool,
}

impl Out {
    fn event(&self, e: &Event) {
        if self.json {
            match serde_json::to_string(e) {
                Ok(s) => println!("{s}"),
                Err(err) => tracing::error!(%err, "event not serializable"),
            }
            return;
        }
        match e {
            Event::NodeStarted {
                id,
                name,
                listen,
                discovery,
                ..
            } => {
                println!("Ferry node \"{name}\"");
                println!("  fingerprint {id}");
                println!(
                    "  listening on {listen} (udp){}",
                    if *discovery { "" } else { ", discovery off" }
                );
            }
            Event::PeerFound { peer } => println!("+ {}", describe(peer)),
            Event::PeerChanged { peer } => println!("~ {}", describe(peer)),
            Event::PeerLost { peer, reason } => {
                println!("- {} ({})", describe(peer), serde_plain(reason))
            }
            Event::NodeStopped => println!("stopped"),
        }
    }

    fn peers(&self, peers: &[PeerSnapshot]) {
        if self.json {
            println!("{}", json!({"type": "peers", "peers": peers}));
            return;
        }
        if peers.is_empty() {
            println!("No one nearby yet. Is Ferry running on the other device? (--connect HOST:PORT works without discovery)");
            return;
        }
        println!(
            "{:<20} {:<14} {:<8} {:<10} {:>9}  ADDRESSES",
            "NAME", "FINGERPRINT", "OS", "STATE", "RTT"
        );
        for p in peers {
            let rtt = p
                .rtt_ms
                .map(|r| format!("{r:.2} ms"))
                .unwrap_or_else(|| "-".into());
            let addrs = p
                .addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "{:<20} {:<14} {:<8} {:<10} {:>9}  {addrs}",
                p.name,
                p.short_id,
                p.os,
                serde_plain(&p.state),
                rtt
            );
        }
    }

    fn error(&self, e: &anyhow::Error) {
        if self.json {
            println!("{}", json!({"type": "error", "message": format!("{e:#}")}));
        } else {
            eprintln!("error: {e:#}");
        }
    }
}

fn describe(p: &PeerSnapshot) -> String {
    let addrs = p
        .addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} ({}) {} {} [{}]",
        p.name,
        p.short_id,
        p.os,
        serde_plain(&p.state),
        addrs
    )
}

/// The snake_case name serde gives a unit enum variant.
fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}
