//! `ferry`: a headless Ferry node and its commands. Human output by default; `--json` prints
//! one JSON object per line, each with a `type` field (the engine's events plus a few command
//! results, documented in docs/USAGE.md).
//!
//! While a node runs on the data dir (the app, or `ferry node`), every command attaches to it
//! over its socket instead of starting one (see [`front`]).

mod contents;
mod front;
mod library;
mod out;
mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ferry_core::control::local::Client;
use ferry_core::control::{self, Capability, Reply};
use ferry_core::{AcceptPolicy, Node, NodeConfig, Target};
use tokio::io::AsyncBufReadExt;

use front::Front;
use out::{short, Out};

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
    /// Days a finished transfer stays listed after it ended (a node this command starts).
    #[arg(long, global = true, env = "FERRY_HISTORY_DAYS", value_name = "DAYS",
          default_value_t = ferry_core::History::DEFAULT.days)]
    history_days: u32,
    /// Finished transfers kept at most, the newest first (a node this command starts).
    #[arg(long, global = true, env = "FERRY_HISTORY_COUNT", value_name = "N",
          default_value_t = ferry_core::History::DEFAULT.count)]
    history_count: u32,
    /// How long a Spacedrop prompt waits for an answer before it counts as rejected.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    prompt_timeout: Duration,
    /// One JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Run the command on another member of a library (name or fingerprint prefix), with
    /// what that member granted this node (`ferry grant` there). Never runs it here.
    #[arg(long, global = true, value_name = "NODE")]
    on: Option<String>,
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
    /// List transfers, newest first, a page at a time (active, paused, failed with reason,
    /// done), or resume / cancel one. Finished ones are kept as --history-days and
    /// --history-count say.
    Transfers {
        #[command(flatten)]
        page: Paging,
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
    /// Let a member (name or fingerprint prefix) do more on this node than read the library:
    /// `manage` (add, rescan, rename, remove locations; rename the library) or `send`
    /// (Spacedrop what this node holds in the library's locations, and steer its transfers).
    Grant {
        node: String,
        capability: String,
        #[arg(long, short)]
        library: String,
    },
    /// Take a grant back; a member's next command needing it is refused, in an open session too.
    Revoke {
        node: String,
        capability: String,
        #[arg(long, short)]
        library: String,
    },
    /// Who holds which grant on this node, and the newest commands members ran here.
    Grants { library: String },
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

/// Which page of the transfer list.
#[derive(Args, Clone, Default)]
struct Paging {
    /// How many transfers to list (at most 2000).
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// List those older than this transfer (ID or a unique prefix): the last of the previous
    /// page, which the listing names when more follow.
    #[arg(long, value_name = "ID")]
    before: Option<String>,
}

#[derive(Subcommand)]
enum TransfersAction {
    /// List them (the default).
    List {
        #[command(flatten)]
        page: Paging,
    },
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
    cfg.history = ferry_core::History {
        days: g.history_days,
        count: g.history_count,
    };
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

/// Which commands need nothing but the data dir when no node runs (and so never start one).
fn offline_capable(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Library {
            action: None
                | Some(
                    LibraryAction::List
                        | LibraryAction::Create { .. }
                        | LibraryAction::Rename { .. }
                )
        } | Command::Members { .. }
            | Command::Location { .. }
            | Command::Sync { .. }
            | Command::Ls { .. }
            | Command::Transfers {
                action: None | Some(TransfersAction::List { .. } | TransfersAction::Show { .. }),
                ..
            }
            | Command::Grant { .. }
            | Command::Revoke { .. }
            | Command::Grants { .. }
    )
}

/// Commands that follow what the node does (a transfer, a pairing, an index job).
fn follows_events(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Receive { .. }
            | Command::Send { .. }
            | Command::Pair { .. }
            | Command::Get { .. }
            | Command::Transfers {
                action: Some(TransfersAction::Resume { .. }),
                ..
            }
            | Command::Location {
                action: LocationAction::Add { .. } | LocationAction::Rescan { .. }
            }
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn absolute(p: &std::path::Path) -> Result<String> {
    Ok(std::path::absolute(p)
        .with_context(|| p.display().to_string())?
        .display()
        .to_string())
}

fn capability(s: &str) -> Result<Capability> {
    Capability::parse_grantable(s)
        .with_context(|| format!("'{s}' cannot be granted (manage or send)"))
}

/// The command as one call to a node, for the commands that are one call. `remote`: its
/// paths are a member's `LOCATION/PATH`, not files here.
fn as_call(cmd: &Command, remote: bool) -> Result<Option<control::Command>> {
    use control::Command as C;
    Ok(Some(match cmd {
        Command::Id => C::Status,
        Command::Peers { .. } => C::Peers,
        Command::Ping {
            peer,
            count,
            interval,
            wait,
        } => C::Ping {
            peer: peer.clone(),
            count: *count,
            interval_ms: millis(*interval),
            wait_ms: millis(*wait),
        },
        Command::Send {
            peer,
            paths,
            wait,
            pin,
        } => C::Send {
            peer: peer.clone(),
            paths: if remote {
                paths.iter().map(|p| p.display().to_string()).collect()
            } else {
                paths.iter().map(|p| absolute(p)).collect::<Result<_>>()?
            },
            wait_ms: millis(*wait),
            pin: pin.clone(),
        },
        Command::Transfers { page, action } => match action {
            None | Some(TransfersAction::List { .. }) => {
                let page = match action {
                    Some(TransfersAction::List { page }) => page,
                    _ => page,
                };
                C::Transfers {
                    limit: Some(page.limit),
                    before: page.before.clone(),
                }
            }
            Some(TransfersAction::Show { id }) => C::Transfer { id: id.clone() },
            Some(TransfersAction::Resume { id }) => C::Resume { id: id.clone() },
            Some(TransfersAction::Cancel { id }) => C::Cancel { id: id.clone() },
        },
        Command::Library { action } => match action {
            None | Some(LibraryAction::List) => C::Libraries,
            Some(LibraryAction::Create { name }) => C::CreateLibrary { name: name.clone() },
            Some(LibraryAction::Rename { library, name }) => C::RenameLibrary {
                library: library.clone(),
                name: name.clone(),
            },
            Some(LibraryAction::Delete { library, wait }) => C::DeleteLibrary {
                library: library.clone(),
                wait_ms: millis(*wait),
            },
        },
        Command::Members { library } => C::Members {
            library: library.clone(),
        },
        Command::Unpair {
            node,
            library,
            wait,
        } => C::Unpair {
            node: node.clone(),
            library: library.clone(),
            wait_ms: millis(*wait),
        },
        Command::Location { action } => match action {
            LocationAction::Add { path, library, .. } => C::AddLocation {
                library: library.clone(),
                path: if remote {
                    path.display().to_string()
                } else {
                    absolute(path)?
                },
            },
            LocationAction::List { library } => C::Locations {
                library: library.clone(),
            },
            LocationAction::Rescan { location, library } => C::RescanLocation {
                library: library.clone(),
                location: location.clone(),
            },
            LocationAction::Rename {
                location,
                name,
                library,
            } => C::RenameLocation {
                library: library.clone(),
                location: location.clone(),
                name: name.clone(),
            },
            LocationAction::Remove { location, library } => C::RemoveLocation {
                library: library.clone(),
                location: location.clone(),
            },
        },
        Command::Sync {
            action: SyncAction::Status { library },
        } => C::SyncStatus {
            library: library.clone(),
        },
        Command::Ls {
            library,
            path: None,
        } => C::Locations {
            library: library.clone(),
        },
        Command::Ls {
            library,
            path: Some(path),
        } => C::Entries {
            library: library.clone(),
            path: path.clone(),
        },
        Command::Grant {
            node,
            capability: cap,
            library,
        } => C::Grant {
            library: library.clone(),
            node: node.clone(),
            capability: capability(cap)?,
        },
        Command::Revoke {
            node,
            capability: cap,
            library,
        } => C::Revoke {
            library: library.clone(),
            node: node.clone(),
            capability: capability(cap)?,
        },
        Command::Grants { library } => C::Grants {
            library: library.clone(),
        },
        Command::Node | Command::Receive { .. } | Command::Pair { .. } | Command::Get { .. } => {
            return Ok(None)
        }
    }))
}

/// The library a command names, for `--on` (which needs one to reach the member through).
fn library_of(cmd: &Command) -> Option<String> {
    as_call(cmd, true)
        .ok()
        .flatten()
        .and_then(|mut c| c.library_mut().cloned())
}

/// Runs the command; returns the process exit code.
async fn run(cli: Cli, out: &Out) -> Result<i32> {
    let g = cli.global;
    let cmd = cli.command;
    let data_dir = node_config(&g, false)?.data_dir;
    if let Command::Node = cmd {
        let mut cfg = with_localsend(node_config(&g, true)?, &g);
        cfg.attachable = true;
        let front = Front::own(Node::start(cfg).await?);
        let r = run_node(&front, out, &g, None).await;
        front.close().await;
        return r.map(|()| 0);
    }
    // A node already running here (the app, `ferry node`) takes the command.
    let attached = Client::attach(&data_dir, follows_events(&cmd)).await?;
    let front = match attached {
        Some(client) => Front::Attached(client),
        None if offline_capable(&cmd) && g.on.is_none() => {
            Front::Offline(control::Engine::offline(data_dir)?)
        }
        None => {
            let long_running = matches!(cmd, Command::Receive { .. } | Command::Send { .. });
            let mut cfg = node_config(&g, long_running)?;
            // LocalSend listens on a fixed port: only the commands that meet devices start it.
            if matches!(
                cmd,
                Command::Receive { .. } | Command::Send { .. } | Command::Peers { .. }
            ) {
                cfg = with_localsend(cfg, &g);
            }
            // Only a node that keeps running indexes and watches (like the app); one-shot
            // commands leave that to it. A receiver is a node others may attach to.
            cfg.index = matches!(cmd, Command::Receive { .. });
            cfg.attachable = matches!(cmd, Command::Receive { .. });
            Front::own(Node::start(cfg).await?)
        }
    };
    let code = match &g.on {
        Some(node) => on_member(&front, out, node, &cmd).await,
        None => dispatch(&front, out, &g, cmd).await,
    };
    front.close().await;
    code
}

fn with_localsend(mut cfg: NodeConfig, g: &Global) -> NodeConfig {
    if !g.no_localsend {
        cfg.localsend = Some(ferry_core::LocalSendConfig {
            pin: g.localsend_pin.clone(),
            ..Default::default()
        });
    }
    cfg
}

/// `ferry --on NODE COMMAND`: the command runs on that member, under its grants.
async fn on_member(front: &Front, out: &Out, node: &str, cmd: &Command) -> Result<i32> {
    let Some(command) = as_call(cmd, true)? else {
        bail!("this command cannot run on another node (it follows events there)");
    };
    let reply = front
        .call(control::Command::Remote {
            node: node.to_string(),
            library: library_of(cmd),
            command: Box::new(command),
        })
        .await?;
    print_reply(out, cmd, &reply);
    Ok(0)
}

/// Prints what a one-call command answered.
fn print_reply(out: &Out, cmd: &Command, reply: &Reply) {
    match reply {
        Reply::Done => {}
        Reply::Status { status } => out.status(status),
        Reply::Peers { peers, localsend } => {
            out.peers(peers);
            out.localsend_devices(localsend);
        }
        Reply::Pinged {
            peer,
            name,
            rtts_ms,
        } => {
            let rtts: Vec<Duration> = rtts_ms
                .iter()
                .map(|m| Duration::from_secs_f64(m / 1000.0))
                .collect();
            if let Ok(id) = peer.parse() {
                out.ping(&id, name, &rtts);
            }
        }
        Reply::Sent { transfer, to, .. } => {
            out.note(&format!("Offering to {to} [{}]", short(&transfer.id)));
            out.progress(transfer);
        }
        Reply::Transfers { transfers, next } => match cmd {
            Command::Transfers {
                action: Some(TransfersAction::Cancel { .. }),
                ..
            } => out.note("cancelled"),
            Command::Transfers { page, action } => {
                let before = match action {
                    Some(TransfersAction::List { page }) => &page.before,
                    _ => &page.before,
                };
                out.transfers(transfers, next.as_deref(), before.is_some())
            }
            _ => out.transfers(transfers, next.as_deref(), false),
        },
        Reply::Transfer {
            transfer,
            renamed,
            failed,
        } => out.transfer_report(transfer, renamed, failed),
        Reply::Libraries { libraries } => out.libraries(libraries),
        Reply::Library { library } => match cmd {
            Command::Members { .. } => out.members(library),
            Command::Library {
                action: Some(LibraryAction::Rename { .. }),
            } => {
                out.library(library);
                out.note("Members get the new name when they next meet this node.");
            }
            _ => out.library(library),
        },
        Reply::Deleted { name, reached } => {
            library::report(out, reached);
            out.note(&format!(
                "Left and deleted library \"{name}\" on this device."
            ));
        }
        Reply::Unpaired { library, reached } => {
            out.library(library);
            library::report(out, reached);
        }
        Reply::Pairing { id } => out.note(&format!("Pairing {id} started")),
        Reply::Locations { locations } => contents::print_locations(out, locations),
        Reply::Location { location } => match cmd {
            Command::Location {
                action: LocationAction::Remove { .. },
            } => out.note(&format!(
                "Removed location {} from the library (the folder is untouched).",
                location.path
            )),
            _ => contents::print_location(out, location),
        },
        Reply::Entries { entries, .. } => contents::print_entries(out, entries),
        Reply::SyncStatus { members } => contents::print_sync(out, members),
        Reply::Download { download } => out.get_progress(&download.progress),
        Reply::Grants { grants, log } => library::print_grants(out, grants, log),
        Reply::Peer { peer } => out.peers(std::slice::from_ref(peer)),
        Reply::Page { page } => contents::print_entries(out, &page.entries),
        Reply::Entry { entry, .. } => contents::print_entries(out, std::slice::from_ref(entry)),
        // The app's: no `ferry` command asks for these.
        Reply::Snapshot { .. } | Reply::Media { .. } => {}
    }
}

/// Runs a command here (on the attached node, a node of this process, or the data dir).
async fn dispatch(front: &Front, out: &Out, g: &Global, cmd: Command) -> Result<i32> {
    match cmd {
        Command::Receive { once } => run_node(front, out, g, Some(once)).await.map(|()| 0),
        Command::Send { .. } => {
            let call = as_call(&cmd, false)?.context("send")?;
            transfer::send(front, out, call).await
        }
        Command::Transfers {
            action: Some(TransfersAction::Resume { id }),
            ..
        } => transfer::resume(front, out, &id).await,
        Command::Pair {
            peer,
            library,
            wait,
        } => library::pair(front, out, peer, library, wait).await,
        Command::Get {
            library,
            path,
            dest,
            wait,
        } => {
            let dest = absolute(&dest.unwrap_or_else(|| PathBuf::from(".")))?;
            contents::get(front, out, library, path, dest, wait).await
        }
        Command::Location {
            action:
                LocationAction::Add {
                    ref path,
                    ref library,
                    no_index,
                },
        } => contents::add(front, out, library, path, !no_index)
            .await
            .map(|()| 0),
        Command::Location {
            action:
                LocationAction::Rescan {
                    ref location,
                    ref library,
                },
        } => contents::rescan(front, out, library, location)
            .await
            .map(|()| 0),
        Command::Peers { wait } => {
            // A node of this process has just started: give discovery its time. An attached
            // node has been looking all along.
            if matches!(front, Front::Own { .. }) {
                tokio::time::sleep(wait).await;
            }
            let reply = front.call(control::Command::Peers).await?;
            print_reply(out, &cmd, &reply);
            Ok(0)
        }
        cmd => {
            let call = as_call(&cmd, false)?.context("not a one-call command")?;
            let reply = front.call(call).await?;
            print_reply(out, &cmd, &reply);
            Ok(0)
        }
    }
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

/// The long-running node, or a front end attached to one. `receive` is `Some(once)` for
/// `ferry receive`.
async fn run_node(front: &Front, out: &Out, g: &Global, receive: Option<bool>) -> Result<()> {
    match front {
        Front::Own { node, .. } => {
            // A receiver's folder is made now, as a Downloads folder would be there: a path
            // that cannot be one is said at start, not at the first offer.
            let dest = node.spacedrop().config().dest;
            let created = match receive {
                Some(_) => ensure_folder(&dest)?,
                None => false,
            };
            out.event(&node.started_event());
            // The node dialed its --connect peers before this subscription: peers it already
            // has would otherwise never be announced (announcing one twice is harmless).
            for peer in node.peers() {
                out.event(&ferry_core::Event::PeerFound { peer });
            }
            if receive.is_some() {
                let new = if created { " (a new folder)" } else { "" };
                out.note(&format!("Receiving into {}{new}", dest.display()));
            }
        }
        Front::Attached(client) => {
            if let Some(dest) = &g.dest {
                ensure_folder(dest)?;
            }
            out.attached(client.node(), g.dest.as_deref());
        }
        Front::Offline(_) => bail!("this needs a running node"),
    }
    let accept_from: Vec<ferry_core::PeerId> = g
        .accept_from
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    let dest = g.dest.as_deref().map(absolute).transpose()?;
    // Pairings waiting for this user's y/n (a y/n answers them before any Spacedrop prompt).
    let mut pairings: Vec<String> = vec![];
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("signal handler")?;
    loop {
        tokio::select! {
            e = front.event() => {
                let Some(e) = e else { return Ok(()) };
                out.event(&e);
                match &e {
                    ferry_core::Event::Pairing { pairing: p } => {
                        pairings.retain(|id| *id != p.id);
                        if matches!(p.state, ferry_core::PairingState::Confirm { .. }) {
                            pairings.push(p.id.clone());
                        }
                    }
                    // An attached receiver answers the way its flags say (a node of this
                    // process was started with them as its policy).
                    ferry_core::Event::SpacedropPrompt { prompt }
                        if front.attached()
                            && receive.is_some()
                            && (g.yes || accept_from.contains(&prompt.peer)) =>
                    {
                        let answer = control::Command::Answer {
                            id: Some(prompt.transfer.clone()),
                            accept: true,
                            dest: dest.clone(),
                        };
                        if let Err(e) = front.call(answer).await {
                            out.error(&e);
                        }
                    }
                    ferry_core::Event::Transfer { transfer }
                        if receive == Some(true)
                            && transfer.direction == ferry_core::spacedrop::Direction::Receive
                            && transfer.state.is_final() =>
                    {
                        return Ok(());
                    }
                    _ => {}
                }
            },
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if !command(front, out, line.trim(), &mut pairings).await {
                        return Ok(());
                    }
                }
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
transfers [BEFORE-ID], pause ID, resume ID, cancel ID, peers, ping PEER, name NEW, quit";

/// One line typed into a running node (or a front end attached to one). Returns false to
/// stop.
async fn command(front: &Front, out: &Out, line: &str, pairings: &mut [String]) -> bool {
    use control::Command as C;
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("");
    let arg = words.next().map(str::to_owned);
    let more = words.next().map(str::to_owned);
    let yes = matches!(cmd, "y" | "yes" | "accept");
    let older = arg.is_some();
    let call = match (cmd, arg) {
        ("", _) => return true,
        ("quit" | "exit", _) => return false,
        ("help", _) => {
            out.note(HELP);
            return true;
        }
        ("name", Some(_)) => C::SetName {
            name: line
                .split_once(' ')
                .map(|(_, n)| n.trim())
                .unwrap_or("")
                .into(),
        },
        ("peers", _) => C::Peers,
        ("ping", Some(p)) => C::Ping {
            peer: p,
            count: 1,
            interval_ms: 0,
            wait_ms: 2000,
        },
        // The newest page; `transfers ID` the page after that transfer.
        ("transfers", before) => C::Transfers {
            limit: None,
            before,
        },
        ("y" | "yes" | "accept" | "n" | "no" | "reject", arg) => {
            // A pairing waiting for this user comes first: it is the rarer, more urgent question.
            let pairing = arg
                .as_deref()
                .and_then(|a| pairings.iter().find(|p| p.starts_with(a)))
                .or_else(|| (pairings.len() == 1).then(|| &pairings[0]));
            match pairing {
                Some(p) => C::AnswerPairing {
                    id: Some(p.clone()),
                    accept: yes,
                },
                // `y`, `y DIR`, `accept ID DIR`: without an id there must be one prompt.
                None => {
                    let (id, dir) = match (&arg, &more) {
                        (Some(a), Some(d)) => (Some(a.clone()), Some(d.clone())),
                        (Some(a), None)
                            if a.len() >= 4 && a.chars().all(|c| c.is_ascii_hexdigit()) =>
                        {
                            (Some(a.clone()), None)
                        }
                        (a, _) => (None, a.clone()),
                    };
                    C::Answer {
                        id,
                        accept: yes,
                        dest: dir.map(|d| absolute(std::path::Path::new(&d)).unwrap_or(d)),
                    }
                }
            }
        }
        ("pause", Some(id)) => C::Pause { id },
        ("resume", Some(id)) => C::Resume { id },
        ("cancel", Some(id)) => C::Cancel { id },
        _ => {
            out.error(&anyhow::anyhow!("unknown command '{line}' ({HELP})"));
            return true;
        }
    };
    match front.call(call).await {
        Ok(Reply::Peers { peers, localsend }) => {
            out.peers(&peers);
            out.localsend_devices(&localsend);
        }
        Ok(Reply::Transfers { transfers, next }) if cmd == "transfers" => {
            out.transfers(&transfers, next.as_deref(), older)
        }
        Ok(r @ Reply::Pinged { .. }) => print_reply(out, &Command::Id, &r),
        Ok(_) => {}
        Err(e) => out.error(&e),
    }
    true
}
