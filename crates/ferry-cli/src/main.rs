//! `ferry`: a headless Ferry node and its commands. Human output by default; `--json` prints
//! one JSON object per line, each with a `type` field (the engine's events plus a few command
//! results, documented in docs/USAGE.md).

mod contents;
mod library;
mod out;
mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ferry_core::{AcceptPolicy, Node, NodeConfig, Target};
use tokio::io::AsyncBufReadExt;

use out::Out;

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
    #[arg(long, global = true, env = "FERRY_NO_DISCOVERY", value_parser = clap::builder::FalseyValueParser::new())]
    no_discovery: bool,
    /// Do not talk to LocalSend devices (by default `node`, `receive`, `send` and `peers` do:
    /// they listen on TCP 53317 and, with discovery on, announce on 224.0.0.167).
    #[arg(long, global = true, env = "FERRY_NO_LOCALSEND", value_parser = clap::builder::FalseyValueParser::new())]
    no_localsend: bool,
    /// A PIN LocalSend senders must give.
    #[arg(long, global = true, env = "FERRY_LOCALSEND_PIN", value_name = "PIN")]
    localsend_pin: Option<String>,
    /// Keep a connection to this peer: host:port or FINGERPRINT@host:port (repeatable).
    #[arg(long, global = true, value_name = "ADDR")]
    connect: Vec<String>,
    /// Where received files go (default: your Downloads folder).
    #[arg(long, global = true, env = "FERRY_DEST")]
    dest: Option<PathBuf>,
    /// Accept every incoming transfer without asking.
    #[arg(long, global = true)]
    yes: bool,
    /// Accept transfers from these peers (fingerprints) without asking; ask about others.
    #[arg(long, global = true, value_delimiter = ',', value_name = "FINGERPRINT")]
    accept_from: Vec<String>,
    /// How long a Spacedrop prompt waits for an answer before it counts as rejected.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    prompt_timeout: Duration,
    /// One JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: print its identity, then peers, prompts and transfers as they happen.
    /// Reads commands on stdin (type `help`).
    Node,
    /// Run a node that receives: answer prompts with y/n on stdin (or use --yes / --accept-from).
    Receive {
        /// Exit after the first transfer ends (0 if it arrived complete and verified).
        #[arg(long)]
        once: bool,
    },
    /// Send files and folders to a peer and follow the transfer to its end.
    /// While it runs, stdin takes `p` (pause), `r` (resume) and `c` (cancel).
    Send {
        peer: String,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// How long to look for a peer given by name or fingerprint.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        wait: Duration,
        /// The PIN a LocalSend receiver requires.
        #[arg(long)]
        pin: Option<String>,
    },
    /// List transfers (active, paused, failed with reason, done), or resume / cancel one.
    Transfers {
        #[command(subcommand)]
        action: Option<TransfersAction>,
    },
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
    /// Create, list, rename or delete libraries (sets of paired devices).
    Library {
        #[command(subcommand)]
        action: Option<LibraryAction>,
    },
    /// Ask a nearby peer to join a library. Both devices show a code; confirm it with y/n.
    Pair {
        peer: String,
        /// The library (name or id prefix).
        #[arg(long, short)]
        library: String,
        /// How long to look for a peer given by name or fingerprint.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        wait: Duration,
    },
    /// List a library's members with their state and when each was last seen.
    Members {
        /// The library (name or id prefix).
        library: String,
    },
    /// Add, list, rescan or remove a library's locations (folders it indexes).
    Location {
        #[command(subcommand)]
        action: LocationAction,
    },
    /// Library sync: per member, what this node holds of its locations and how far behind.
    Sync {
        #[command(subcommand)]
        action: SyncAction,
    },
    /// List a library's locations (every member's: owner, online, as of when), or the entries
    /// of LOCATION[/FOLDER] (name or id prefix), remote ones too.
    Ls {
        library: String,
        path: Option<String>,
    },
    /// Fetch a member's file or folder (LOCATION/PATH, as `ls` names it) into DEST (default:
    /// the current folder), verified; run it again to resume.
    Get {
        library: String,
        path: String,
        dest: Option<PathBuf>,
        /// How long to wait for the device that holds it to connect.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Remove a member (name or fingerprint prefix) from a library; every member refuses it
    /// once it hears. Members online now are told at once.
    Unpair {
        node: String,
        #[arg(long, short)]
        library: String,
        /// How long to try reaching the other members.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        wait: Duration,
    },
}

#[derive(Subcommand)]
enum LocationAction {
    /// Add a folder to a library and index it now (a running node also watches it).
    Add {
        path: PathBuf,
        #[arg(long, short)]
        library: String,
        /// Only record it; a running node (or `location rescan`) indexes it.
        #[arg(long)]
        no_index: bool,
    },
    /// List a library's locations with their counts and state.
    List { library: String },
    /// Walk a location again, compute missing content ids and thumbnails.
    Rescan {
        location: String,
        #[arg(long, short)]
        library: String,
    },
    /// Rename one of this node's locations (every member sees the new name).
    Rename {
        location: String,
        name: String,
        #[arg(long, short)]
        library: String,
    },
    /// Remove a location from the library (the folder is untouched).
    Remove {
        location: String,
        #[arg(long, short)]
        library: String,
    },
}

#[derive(Subcommand)]
enum SyncAction {
    /// Per member: locations and entries held here, up to which change, how far behind.
    Status { library: String },
}

#[derive(Subcommand)]
enum LibraryAction {
    /// List libraries (the default).
    List,
    Create {
        name: String,
    },
    Rename {
        library: String,
        name: String,
    },
    /// Leave a library and delete it on this device (members online now are told).
    Delete {
        library: String,
        /// How long to try reaching the other members.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        wait: Duration,
    },
}

#[derive(Subcommand)]
enum TransfersAction {
    /// List them (the default).
    List,
    /// Resume an interrupted outgoing transfer (ID or a unique prefix) and follow it.
    Resume { id: String },
    /// Cancel a transfer; a receiver also removes its partial files.
    Cancel { id: String },
    /// One transfer with every file it renamed or failed (listings show the first ones).
    Show { id: String },
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
    let out = Out::new(cli.global.json);
    match run(cli, &out).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            out.error(&e);
            std::process::exit(1);
        }
    }
}

fn node_config(g: &Global, resume_transfers: bool) -> Result<NodeConfig> {
    let mut cfg = NodeConfig::new(
        g.data_dir
            .clone()
            .unwrap_or_else(NodeConfig::default_data_dir),
    );
    cfg.name = g.name.clone();
    cfg.listen = g.listen;
    cfg.discovery = !g.no_discovery;
    cfg.interfaces = g.interfaces.clone();
    cfg.resume_transfers = resume_transfers;
    for c in &g.connect {
        match c.parse::<Target>()? {
            Target::Addr { addr, pin } => cfg.connect.push((addr, pin)),
            Target::Query(q) => {
                bail!("--connect needs host:port or FINGERPRINT@host:port, not '{q}'")
            }
        }
    }
    if let Some(dest) = &g.dest {
        cfg.spacedrop.dest = std::path::absolute(dest).context("--dest")?;
    }
    cfg.spacedrop.prompt_timeout = g.prompt_timeout;
    cfg.spacedrop.accept = if g.yes {
        AcceptPolicy::Everyone
    } else if !g.accept_from.is_empty() {
        let peers = g
            .accept_from
            .iter()
            .map(|p| p.parse().with_context(|| format!("--accept-from {p}")))
            .collect::<Result<_>>()?;
        AcceptPolicy::From(peers)
    } else {
        AcceptPolicy::Ask
    };
    Ok(cfg)
}

/// Runs the command; returns the process exit code.
async fn run(cli: Cli, out: &Out) -> Result<i32> {
    let g = cli.global;
    // Listing reads the database directly, so it also works while a node runs.
    if let Command::Transfers {
        action: None | Some(TransfersAction::List),
    } = cli.command
    {
        return transfer::list(&node_config(&g, false)?, out);
    }
    if let Command::Transfers {
        action: Some(TransfersAction::Show { id }),
    } = &cli.command
    {
        return transfer::show(&node_config(&g, false)?, out, id);
    }
    // Library bookkeeping that needs no network also works beside a running node (the app).
    if let Some(r) = offline_library(&cli.command, &g, out) {
        return r.map(|()| 0);
    }
    let long_running = matches!(
        cli.command,
        Command::Node | Command::Receive { .. } | Command::Send { .. }
    );
    let mut cfg = node_config(&g, long_running)?;
    // LocalSend listens on a fixed port: only the commands that meet devices start it.
    let meets_devices = matches!(
        cli.command,
        Command::Node | Command::Receive { .. } | Command::Send { .. } | Command::Peers { .. }
    );
    if meets_devices && !g.no_localsend {
        cfg.localsend = Some(ferry_core::LocalSendConfig {
            pin: g.localsend_pin.clone(),
            ..Default::default()
        });
    }
    // Only a node that keeps running indexes and watches (like the app); one-shot commands
    // leave that to it.
    cfg.index = matches!(cli.command, Command::Node | Command::Receive { .. });
    let node = Node::start(cfg).await?;
    let code = match cli.command {
        Command::Node => run_node(&node, out, None).await.map(|()| 0),
        Command::Receive { once } => run_node(&node, out, Some(once)).await.map(|()| 0),
        Command::Send {
            peer,
            paths,
            wait,
            pin,
        } => transfer::send(&node, out, &peer, paths, wait, pin).await,
        Command::Transfers {
            action: Some(TransfersAction::Resume { id }),
        } => transfer::resume(&node, out, &id).await,
        Command::Transfers {
            action: Some(TransfersAction::Cancel { id }),
        } => transfer::cancel(&node, out, &id).map(|()| 0),
        Command::Transfers { .. } => Ok(0),
        Command::Peers { wait } => {
            tokio::time::sleep(wait).await;
            out.peers(&node.peers());
            out.localsend_devices(&node.spacedrop().localsend_devices());
            Ok(0)
        }
        Command::Ping {
            peer,
            count,
            interval,
            wait,
        } => ping(&node, out, &peer, count, interval, wait)
            .await
            .map(|()| 0),
        Command::Id => {
            out.event(&node.started_event());
            Ok(0)
        }
        Command::Pair {
            peer,
            library,
            wait,
        } => library::pair(&node, out, &peer, &library, wait).await,
        Command::Unpair {
            node: who,
            library,
            wait,
        } => library::unpair(&node, out, &who, &library, wait)
            .await
            .map(|()| 0),
        Command::Library {
            action: Some(LibraryAction::Delete { library, wait }),
        } => library::delete(&node, out, &library, wait)
            .await
            .map(|()| 0),
        Command::Get {
            library,
            path,
            dest,
            wait,
        } => {
            let dest = dest.unwrap_or_else(|| PathBuf::from("."));
            contents::get(&node, out, &library, &path, &dest, wait).await
        }
        Command::Library { .. }
        | Command::Members { .. }
        | Command::Location { .. }
        | Command::Sync { .. }
        | Command::Ls { .. } => Ok(0),
    };
    node.shutdown().await;
    code
}

/// Runs the library commands that need no node; `None` for every other command.
fn offline_library(cmd: &Command, g: &Global, out: &Out) -> Option<Result<()>> {
    let libs = || {
        Ok::<_, anyhow::Error>(ferry_core::Libraries::offline(
            &node_config(g, false)?.data_dir,
        )?)
    };
    Some(match cmd {
        Command::Library {
            action: None | Some(LibraryAction::List),
        } => libs().map(|l| library::list(&l, out)),
        Command::Library {
            action: Some(LibraryAction::Create { name }),
        } => libs().and_then(|l| library::create(&l, out, name)),
        Command::Library {
            action: Some(LibraryAction::Rename { library, name }),
        } => libs().and_then(|l| library::rename(&l, out, library, name)),
        Command::Members { library } => libs().and_then(|l| library::members(&l, out, library)),
        Command::Location { action } => libs().and_then(|l| match action {
            LocationAction::Add {
                path,
                library,
                no_index,
            } => contents::add(&l, out, library, path, !no_index),
            LocationAction::List { library } => contents::list(&l, out, library),
            LocationAction::Rescan { location, library } => {
                contents::rescan(&l, out, library, location)
            }
            LocationAction::Rename {
                location,
                name,
                library,
            } => contents::rename(&l, out, library, location, name),
            LocationAction::Remove { location, library } => {
                contents::remove(&l, out, library, location)
            }
        }),
        Command::Sync {
            action: SyncAction::Status { library },
        } => libs().and_then(|l| contents::sync_status(&l, out, library)),
        Command::Ls { library, path } => {
            libs().and_then(|l| contents::ls(&l, out, library, path.as_deref()))
        }
        _ => return None,
    })
}

/// Makes `dir` a folder if it is none yet; whether it was made.
fn ensure_folder(dir: &std::path::Path) -> Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot receive into {}", dir.display()))?;
    Ok(true)
}

/// The long-running node. `receive` is `Some(once)` for `ferry receive`.
async fn run_node(node: &Node, out: &Out, receive: Option<bool>) -> Result<()> {
    // A receiver's folder is made now, as a Downloads folder would be there: a path that cannot
    // be one is said at start, not at the first offer.
    let dest = node.spacedrop().config().dest;
    let created = match receive {
        Some(_) => ensure_folder(&dest)?,
        None => false,
    };
    let mut events = node.subscribe();
    out.event(&node.started_event());
    // The node dialed its --connect peers before this subscription: peers it already has would
    // otherwise never be announced (a peer may be announced twice; that is harmless).
    for peer in node.peers() {
        out.event(&ferry_core::Event::PeerFound { peer });
    }
    if receive.is_some() {
        let new = if created { " (a new folder)" } else { "" };
        out.note(&format!("Receiving into {}{new}", dest.display()));
    }
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("signal handler")?;
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => {
                    out.event(&e);
                    if let (Some(true), ferry_core::Event::Transfer { transfer }) = (receive, &e) {
                        if transfer.state.is_final() {
                            return Ok(());
                        }
                    }
                }
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

const HELP: &str =
    "commands: y / n (answer the open prompt or pairing), accept [ID] [DIR], reject [ID], \
transfers, pause ID, resume ID, cancel ID, peers, ping PEER, name NEW, quit";

/// One line typed into a running node. Returns false to stop.
async fn command(node: &Node, out: &Out, line: &str) -> bool {
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("");
    let arg = words.next();
    let rest: Vec<&str> = words.collect();
    let r: Result<()> = match (cmd, arg) {
        ("", _) => Ok(()),
        ("quit" | "exit", _) => return false,
        ("help", _) => {
            out.note(HELP);
            Ok(())
        }
        ("name", Some(_)) => {
            node.set_name(line.split_once(' ').map(|(_, n)| n.trim()).unwrap_or(""));
            Ok(())
        }
        ("peers", _) => {
            out.peers(&node.peers());
            Ok(())
        }
        ("ping", Some(p)) => ping(node, out, p, 1, Duration::ZERO, Duration::from_secs(2)).await,
        ("y" | "yes" | "accept", _) | ("n" | "no" | "reject", _) => {
            // A pairing waiting for this user comes first: it is the rarer, more urgent question.
            match library::answer(node, cmd, arg) {
                Ok(true) => Ok(()),
                Ok(false) => transfer::answer(node, cmd, arg, rest.first().copied()),
                Err(e) => Err(e),
            }
        }
        ("transfers", _) => {
            out.transfers(&node.spacedrop().transfers());
            Ok(())
        }
        ("pause" | "resume" | "cancel", Some(id)) => transfer::act(node, cmd, id),
        _ => Err(anyhow::anyhow!("unknown command '{line}' ({HELP})")),
    };
    if let Err(e) = r {
        out.error(&e);
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
    out.ping(&id, &name, &rtts);
    Ok(())
}
