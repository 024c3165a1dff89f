//! `ferry-bench`: what this machine allows (bare QUIC with Ferry's transport setup, TCP, BLAKE3,
//! disk) next to what Ferry achieves end to end with real `ferry` processes on loopback, in one
//! table with ratios to the targets. Figures, not assertions: nothing here passes or fails.
//!
//! Build both binaries in release, then run:
//! `cargo build --release -p ferry-cli -p ferry-bench && target/release/ferry-bench [--quick]`
//!
//! Only loopback is used, and every `ferry` runs with `--no-discovery` (no mDNS).

mod data;
mod ferry_e2e;
mod impair;
mod limits;
mod procfs;
mod router;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Workload names, in the order they run (limits first: the Ferry rows are compared to them).
const WORKLOADS: &[(&str, &str)] = &[
    ("blake3", "BLAKE3 hashing speed, one thread, in memory"),
    (
        "disk",
        "file write + fsync, then read back after dropping it from the page cache",
    ),
    ("tcp", "TCP loopback throughput between two processes"),
    (
        "quic",
        "bare quinn throughput between two processes, Ferry's transport setup",
    ),
    ("ferry-big", "ferry send/receive of one big file"),
    (
        "ferry-small",
        "ferry send/receive of a folder of 4 KiB files",
    ),
    (
        "ferry-rss",
        "peak memory of ferry send/receive with a huge file",
    ),
    (
        "ferry-resume",
        "receiver killed halfway and restarted: bytes sent again",
    ),
];

#[derive(Parser)]
#[command(
    name = "ferry-bench",
    about = "Machine limits vs. Ferry end to end on loopback"
)]
struct Cli {
    #[command(subcommand)]
    server: Option<Server>,
    /// Smaller sizes for a smoke run (256 MiB, 1 GiB, 2,000 files).
    #[arg(long)]
    quick: bool,
    /// Run only these workloads (comma separated): blake3, disk, tcp, quic, ferry-big,
    /// ferry-small, ferry-rss, ferry-resume.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    only: Vec<String>,
    /// Where to make the working directory (default: the system temp dir, /tmp). The bench
    /// works in a fresh `ferry-bench-PID` inside it and removes that at the end unless --keep.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The ferry binary (default: `ferry` next to this binary).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// Keep the working directory (sources, logs) for inspection.
    #[arg(long)]
    keep: bool,
}

/// The server ends of the two-process limits: this binary re-executes itself with one of these.
#[derive(Subcommand)]
enum Server {
    /// Takes one QUIC transfer (Ferry's endpoint and TLS), prints `port N` first and
    /// `got BYTES SECONDS LOST CPU` last.
    #[command(name = "__quic-server", hide = true)]
    Quic {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    #[command(name = "__tcp-server", hide = true)]
    Tcp,
    /// Sends SIZE bytes over one QUIC stream to a `__quic-server`; prints `MB/s`.
    #[command(name = "__quic-send", hide = true)]
    QuicSend { to: SocketAddr, size: u64 },
    /// The UDP impairment proxy, until killed: LISTEN relays to UPSTREAM with the rules.
    #[command(name = "__impair", hide = true)]
    Impair {
        listen: SocketAddr,
        upstream: SocketAddr,
        /// One-way delay, each direction.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Fraction of packets lost, each direction.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
    },
    /// Prints the name of the congestion controller Ferry's transport uses with this
    /// environment (`FERRY_CONGESTION`), as every `ferry` and bare-QUIC run here would.
    #[command(name = "__congestion", hide = true)]
    Congestion,
    /// The impaired-link router between two namespaces over TUN devices (see router.rs and
    /// scripts/bench-netns.sh), until SIGINT or SIGTERM; then prints its counters. Run it as
    /// root, in a third namespace. Every setting applies to each direction.
    Router(RouterArgs),
}

#[derive(clap::Args)]
struct RouterArgs {
    /// One side: NETNS:IFNAME (NETNS under /var/run/netns, or a path).
    #[arg(long)]
    a: router::Side,
    /// The other side, NETNS:IFNAME.
    #[arg(long)]
    b: router::Side,
    /// One-way delay, milliseconds (RTT = twice this).
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Extra delay per packet, uniform in 0..=this, milliseconds (reorders).
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Fraction of packets lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Fraction of packets sent twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Fraction of packets held back --reorder-ms longer than the others.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    #[arg(long, default_value_t = 10.0)]
    reorder_ms: f64,
    /// Link rate, Mbit/s (10^6 bits); 0: none.
    #[arg(long, default_value_t = 0.0)]
    rate_mbit: f64,
    /// Drop-tail queue bound, bytes: the backlog waiting for the link with --rate-mbit, else
    /// all that the router holds. Default: twice the bandwidth-delay product with a rate (at
    /// least 1 MiB), 16 MiB without.
    #[arg(long)]
    queue_bytes: Option<u64>,
    /// PRNG seed (the same seed, the same losses for the same packets).
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl RouterArgs {
    fn settings(&self) -> router::Settings {
        let ms = |v: f64| std::time::Duration::from_secs_f64(v.max(0.0) / 1e3);
        let rate = (self.rate_mbit > 0.0).then(|| self.rate_mbit * 1e6 / 8.0);
        let queue_bytes = self.queue_bytes.unwrap_or(match rate {
            Some(r) => ((2.0 * r * 2.0 * self.delay_ms / 1e3) as u64).max(MIB),
            None => 16 * MIB,
        });
        router::Settings {
            delay: ms(self.delay_ms),
            jitter: ms(self.jitter_ms),
            loss: self.loss,
            duplicate: self.duplicate,
            reorder: self.reorder,
            reorder_extra: ms(self.reorder_ms),
            rate,
            queue_bytes,
        }
    }
}

/// How much data each workload moves.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Limits and the big-file and resume workloads.
    pub big: u64,
    /// The memory workload: big enough that anything proportional to the file would show.
    pub huge: u64,
    pub small_files: usize,
    pub small_size: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        Sizes {
            big: if quick { 256 * MIB } else { GIB },
            huge: if quick { GIB } else { 4 * GIB },
            small_files: if quick { 2_000 } else { 10_000 },
            small_size: 4096,
        }
    }
}

/// One line of the final table.
pub struct Row {
    pub name: String,
    pub figure: String,
    pub unit: String,
    /// Ratio to a limit or a target, or a remark.
    pub note: String,
}

impl Row {
    pub fn new(name: impl Into<String>, figure: f64, unit: &str, note: impl Into<String>) -> Row {
        let figure = if figure.abs() >= 100.0 {
            format!("{figure:.0}")
        } else {
            format!("{figure:.1}")
        };
        Row {
            name: name.into(),
            figure,
            unit: unit.into(),
            note: note.into(),
        }
    }

    pub fn text(name: impl Into<String>, figure: &str, unit: &str, note: impl Into<String>) -> Row {
        Row {
            name: name.into(),
            figure: figure.into(),
            unit: unit.into(),
            note: note.into(),
        }
    }

    fn failed(name: &str, e: &anyhow::Error) -> Row {
        Row {
            name: name.into(),
            figure: "-".into(),
            unit: "-".into(),
            note: format!("FAILED: {e:#}"),
        }
    }
}

/// Decimal megabytes per second, as `ferry` itself prints sizes.
pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// "1 GiB", "256 MiB", or bytes.
pub fn size_label(bytes: u64) -> String {
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b => format!("{b} B"),
    }
}

/// Figures later rows are compared to.
#[derive(Default)]
pub struct Limits {
    pub quic_mbps: Option<f64>,
    /// CPU seconds per GiB, sender and receiver together.
    pub quic_cpu_per_gib: Option<f64>,
    /// New-file write + fsync: a receiver cannot land data faster than this.
    pub disk_write_mbps: Option<f64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any other thread: the router blocks its stop signals in every thread it has.
    if let Some(Server::Router(a)) = &cli.server {
        return match router::run(&a.a, &a.b, a.settings(), a.seed) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ferry-bench router: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = match cli.server {
        Some(Server::Quic { listen }) => rt.block_on(limits::quic_server(listen)),
        Some(Server::Tcp) => rt.block_on(limits::tcp_server()),
        Some(Server::QuicSend { to, size }) => rt.block_on(async {
            let (secs, _cpu, lost) = limits::quic_send(to, size).await?;
            println!("{:.1} MB/s ({lost} packets lost)", size as f64 / 1e6 / secs);
            Ok(())
        }),
        Some(Server::Impair {
            listen,
            upstream,
            delay_ms,
            loss,
        }) => rt.block_on(async {
            let rules = impair::Rules {
                delay: std::time::Duration::from_millis(delay_ms),
                loss,
                ..Default::default()
            };
            let proxy = impair::Impair::start_on(listen, upstream, rules, 42).await;
            println!("impairing {} -> {upstream}", proxy.addr);
            tokio::signal::ctrl_c().await?;
            println!("{}", proxy.report());
            Ok(())
        }),
        Some(Server::Congestion) => {
            println!(
                "{}",
                ferry_p2p::TransportLimits::default().congestion.name()
            );
            Ok(())
        }
        Some(Server::Router(_)) => unreachable!("handled above"),
        None => run(&cli, &rt),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli, rt: &tokio::runtime::Runtime) -> Result<()> {
    for name in &cli.only {
        if !WORKLOADS.iter().any(|(w, _)| w == name) {
            let names: Vec<_> = WORKLOADS.iter().map(|(w, _)| *w).collect();
            bail!("unknown workload '{name}' (one of: {})", names.join(", "));
        }
    }
    let selected = |name: &str| cli.only.is_empty() || cli.only.iter().any(|n| n == name);
    let sizes = Sizes::new(cli.quick);
    let ferry = match &cli.ferry {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("ferry"),
    };
    if WORKLOADS
        .iter()
        .any(|(w, _)| w.starts_with("ferry-") && selected(w))
        && !ferry.is_file()
    {
        bail!(
            "{} not found: build it with `cargo build --release -p ferry-cli`, or pass --ferry",
            ferry.display()
        );
    }
    let dir = cli
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("ferry-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "ferry-bench: {} run in {} ({} CPUs), sizes {:?}",
        if cli.quick { "quick" } else { "full" },
        dir.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sizes
    );

    // Other work on the machine skews every figure here; the load average shows it.
    let load_before = loadavg();
    let mut rows = vec![];
    let mut lim = Limits::default();
    let mut e2e = ferry_e2e::Ctx::new(&ferry, &dir, sizes);
    for (name, what) in WORKLOADS.iter().filter(|(w, _)| selected(w)) {
        eprintln!("\n== {name}: {what}");
        let r = match *name {
            "blake3" => limits::blake3(sizes.big),
            "disk" => limits::disk(&dir, sizes.big).map(|(rows, mbps)| {
                lim.disk_write_mbps = Some(mbps);
                rows
            }),
            "tcp" => rt.block_on(limits::tcp(sizes.big)),
            "quic" => rt
                .block_on(limits::quic(sizes.big))
                .map(|(rows, mbps, cpu)| {
                    lim.quic_mbps = Some(mbps);
                    lim.quic_cpu_per_gib = Some(cpu);
                    rows
                }),
            "ferry-big" => rt.block_on(e2e.big(&lim)),
            "ferry-small" => rt.block_on(e2e.small()),
            "ferry-rss" => rt.block_on(e2e.rss(&lim)),
            "ferry-resume" => rt.block_on(e2e.resume()),
            _ => unreachable!("checked above"),
        };
        let new = r.unwrap_or_else(|e| vec![Row::failed(name, &e)]);
        for row in &new {
            eprintln!(
                "   {:<34} {:>8} {:<8} {}",
                row.name, row.figure, row.unit, row.note
            );
        }
        rows.extend(new);
    }
    print_table(&rows, cli.quick);
    println!(
        "load average (1/5/15 min) before: {load_before}; after: {}",
        loadavg()
    );
    if cli.keep {
        eprintln!("kept {}", dir.display());
    } else {
        remove(&dir);
    }
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn remove(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
}

fn print_table(rows: &[Row], quick: bool) {
    let head = ["name", "figure", "unit", "ratio/target"];
    let w = |f: fn(&Row) -> &str, h: &str| rows.iter().map(|r| f(r).len()).chain([h.len()]).max();
    let w0 = w(|r| &r.name, head[0]).unwrap_or(0);
    let w1 = w(|r| &r.figure, head[1]).unwrap_or(0);
    let w2 = w(|r| &r.unit, head[2]).unwrap_or(0);
    println!(
        "\nferry-bench summary ({}; MB = 10^6 bytes, MiB = 2^20 bytes)",
        if quick { "quick sizes" } else { "full sizes" }
    );
    println!(
        "{:<w0$} | {:>w1$} | {:<w2$} | {}",
        head[0], head[1], head[2], head[3]
    );
    println!("{}", "-".repeat(w0 + w1 + w2 + 9 + 40));
    for r in rows {
        println!(
            "{:<w0$} | {:>w1$} | {:<w2$} | {}",
            r.name, r.figure, r.unit, r.note
        );
    }
}
