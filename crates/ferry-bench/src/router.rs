//! `ferry-bench router`: a userspace router between two network namespaces over TUN devices,
//! which impairs every packet that crosses it (TCP, UDP, ICMP alike): one-way delay, random
//! loss, jitter and reordering, duplication, a rate limit with a bounded drop-tail queue.
//!
//! Why: this kernel has no netem, and the older impairment ([`crate::impair`]) is a UDP proxy
//! that only QUIC can go through. A router at the IP layer impairs scp, rsync, Syncthing and
//! every other TCP tool in exactly the same way as QUIC, and the tools keep talking to the real
//! address of the other host (nothing to proxy, nothing to configure in them).
//!
//! How (see `scripts/bench-netns.sh` for the whole set-up):
//! - The script makes three namespaces: the two hosts (A, B) and the router's own (R), and
//!   in A and B a persistent TUN device (`ip tuntap add dev fbt-a mode tun`), point to point,
//!   with the host's address and the other host's as peer (`ip addr add IPA peer IPB`), so the
//!   host's route to the other host is that TUN, and nothing else links A and B.
//! - The router runs in R (`ip netns exec R ferry-bench router --a A:fbt-a --b B:fbt-b ...`).
//!   For each side it enters that side's namespace with `setns(2)` on `/var/run/netns/NAME`,
//!   opens `/dev/net/tun` (a TUN file belongs to the namespace it was opened in) and attaches
//!   to the device by name (`TUNSETIFF`, `IFF_TUN | IFF_NO_PI`: bare IP packets), then
//!   returns to R. A device that does not exist yet is created (and vanishes with the router),
//!   but then nobody has configured it: the script creates them beforehand.
//! - A packet the host A sends to B is read from A's TUN and written, unchanged, to B's TUN,
//!   which hands it to B's stack as if it had arrived on that interface; the same B to A. One
//!   thread per direction: `ppoll` on the input until a packet comes or the next queued one is
//!   due, then up to [`BATCH`] reads without waiting, then every due packet written out.
//! - Per packet, [`Schedule::decide`] (a pure function of the settings, the seeded PRNG, the
//!   time and the queue) says: lost, dropped at a full queue, or sent at time T (once or
//!   twice). Queued packets wait in a heap ordered by release time (then arrival), so jitter and
//!   reordering work; without them release times only grow and the heap is a FIFO.
//! - The same settings apply to each direction (each with its own PRNG stream). `--delay-ms`
//!   is one way: RTT = 2 × delay. The rate limit is a serialising link: a packet leaves after
//!   the ones before it, len / rate later; the queue bound is then the backlog waiting for the
//!   link (drop-tail, like a router's buffer), and without a rate it caps what the delay line
//!   holds. Loss is decided before the queue (like netem), so a lost packet takes no link time.
//! - On SIGINT or SIGTERM it prints, per direction, packets and bytes forwarded, lost,
//!   dropped at the full queue, duplicated, and writes that failed, then exits.
//!
//! Limits: one copy into userspace and one back per packet, and one system call each way: at
//! MTU 1500 that is the ceiling (the script measures it, a "router" profile); the write into
//! the receiving TUN also does the receiving stack's work in the router's thread. Large MTUs
//! (9000 or 65000 on the TUNs) make it much faster for TCP, but loss then hits big packets,
//! which is not a real link: the impaired profiles use 1500. TUN has no offloads here (no
//! `IFF_VNET_HDR`), so TCP segments to the MTU before the router. The kernel keeps at most
//! `txqueuelen` packets for the router to read: the script raises it, and a router that falls
//! behind shows as TX drops on the TUN. Timers are `ppoll`'s: tens of microseconds late, no
//! more; jitter is uniform; loss is independent per packet (no bursts).

use std::collections::BinaryHeap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::data;

/// Reads per wake-up before the due packets are written out.
pub const BATCH: usize = 64;
/// Longest wait in `ppoll`: how soon a stop request is seen.
const IDLE: Duration = Duration::from_millis(100);
/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// What the router does to each packet, the same in each direction.
#[derive(Debug, Clone)]
pub struct Settings {
    /// One-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in 0..=jitter, per packet (packets may overtake each other).
    pub jitter: Duration,
    /// Probabilities, 0.0–1.0.
    pub loss: f64,
    pub duplicate: f64,
    /// A packet picked with this probability is held `reorder_extra` longer (overtaken).
    pub reorder: f64,
    pub reorder_extra: Duration,
    /// Bytes per second the link serialises at; None: no limit.
    pub rate: Option<f64>,
    /// Drop-tail bound, bytes: the backlog waiting for the link when there is a rate, else
    /// everything held.
    pub queue_bytes: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_extra: Duration::from_millis(10),
            rate: None,
            queue_bytes: 16 << 20,
        }
    }
}

/// What becomes of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Lost,
    QueueFull,
    /// Leaves at this time (nanoseconds on the router's clock), `copies` times (1 or 2).
    Send {
        at: u64,
        copies: u8,
    },
}

/// The PRNG of `data.rs` (wyrand), seeded: the same seed gives the same losses.
pub struct Prng(data::Rng);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(data::Rng::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// True with probability p (never for p <= 0, always for p >= 1).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64) < p * (1u64 << 53) as f64
    }

    /// Uniform in 0..=n.
    pub fn upto(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % (n + 1)
        }
    }
}

/// The decisions of one direction: settings, PRNG, and when the link is free again.
pub struct Schedule {
    pub s: Settings,
    rng: Prng,
    /// With a rate: when the last accepted packet has been serialised (ns).
    link_free: u64,
}

impl Schedule {
    pub fn new(s: Settings, seed: u64) -> Schedule {
        Schedule {
            s,
            rng: Prng::new(seed),
            link_free: 0,
        }
    }

    /// Bytes waiting for the link at `now` (0 without a rate).
    pub fn backlog(&self, now: u64) -> u64 {
        match self.s.rate {
            Some(rate) if self.link_free > now => {
                ((self.link_free - now) as f64 * rate / 1e9) as u64
            }
            _ => 0,
        }
    }

    /// The fate of a packet of `len` bytes arriving at `now` (ns) while the router holds
    /// `held` bytes.
    pub fn decide(&mut self, now: u64, len: usize, held: u64) -> Verdict {
        if self.rng.chance(self.s.loss) {
            return Verdict::Lost;
        }
        let len = len as u64;
        let depart = match self.s.rate {
            Some(rate) => {
                if self.backlog(now) + len > self.s.queue_bytes {
                    return Verdict::QueueFull;
                }
                let start = self.link_free.max(now);
                self.link_free = start + (len as f64 * 1e9 / rate) as u64;
                self.link_free
            }
            None => {
                if held + len > self.s.queue_bytes {
                    return Verdict::QueueFull;
                }
                now
            }
        };
        let mut at = depart + self.s.delay.as_nanos() as u64;
        at += self.rng.upto(self.s.jitter.as_nanos() as u64);
        if self.rng.chance(self.s.reorder) {
            at += self.s.reorder_extra.as_nanos() as u64;
        }
        let copies = if self.rng.chance(self.s.duplicate) {
            2
        } else {
            1
        };
        Verdict::Send { at, copies }
    }
}

/// A packet waiting for its time; the heap's top is the earliest (then the first to come).
struct Pending {
    at: u64,
    seq: u64,
    pkt: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Pending) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Pending) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Pending) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// The queue of one direction: packets by release time, and the bytes they hold.
#[derive(Default)]
pub struct Queue {
    heap: BinaryHeap<Pending>,
    seq: u64,
    pub held: u64,
}

impl Queue {
    pub fn push(&mut self, at: u64, pkt: Vec<u8>) {
        self.held += pkt.len() as u64;
        self.seq += 1;
        self.heap.push(Pending {
            at,
            seq: self.seq,
            pkt,
        });
    }

    /// The next packet due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.heap.peek()?.at > now {
            return None;
        }
        let p = self.heap.pop()?;
        self.held -= p.pkt.len() as u64;
        Some(p.pkt)
    }

    pub fn next_at(&self) -> Option<u64> {
        self.heap.peek().map(|p| p.at)
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Counters of one direction.
#[derive(Default)]
pub struct Counts {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub lost: AtomicU64,
    pub queue_full: AtomicU64,
    pub duplicated: AtomicU64,
    pub write_errors: AtomicU64,
    /// Most bytes held at once.
    pub peak_held: AtomicU64,
}

impl Counts {
    pub fn report(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} packets ({} bytes) forwarded, {} lost, {} dropped at the full queue, {} duplicated, \
             {} write errors, at most {} bytes queued",
            g(&self.packets),
            g(&self.bytes),
            g(&self.lost),
            g(&self.queue_full),
            g(&self.duplicated),
            g(&self.write_errors),
            g(&self.peak_held),
        )
    }
}

/// Where a TUN device is: a namespace (a name under /var/run/netns, or a path) and the
/// interface's name, written `NS:IFNAME`.
#[derive(Debug, Clone)]
pub struct Side {
    pub netns: String,
    pub ifname: String,
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Side, String> {
        let (ns, ifname) = s.rsplit_once(':').ok_or("expected NETNS:IFNAME")?;
        if ns.is_empty() || ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
            return Err(format!("bad NETNS:IFNAME '{s}'"));
        }
        Ok(Side {
            netns: ns.into(),
            ifname: ifname.into(),
        })
    }
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ns_path(netns: &str) -> String {
    if netns.contains('/') {
        netns.into()
    } else {
        format!("/var/run/netns/{netns}")
    }
}

fn setns(f: &File) -> io::Result<()> {
    // SAFETY: setns on a namespace file we hold open; it only changes this thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens `/dev/net/tun` inside `side.netns` and attaches it to the interface there; this thread
/// is back in its own namespace afterwards, also on error.
pub fn open_tun(side: &Side) -> Result<OwnedFd> {
    let own = File::open("/proc/thread-self/ns/net").context("own netns")?;
    let path = ns_path(&side.netns);
    let target = File::open(&path).with_context(|| format!("opening {path}"))?;
    setns(&target).with_context(|| format!("setns into {path}"))?;
    let r = attach(&side.ifname);
    setns(&own).context("setns back")?;
    r.with_context(|| format!("attaching to {} in {}", side.ifname, side.netns))
}

fn attach(ifname: &str) -> Result<OwnedFd> {
    // SAFETY: plain open(2) of a path literal; the descriptor is owned right below.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("open /dev/net/tun");
    }
    // SAFETY: fd was just opened and is not owned elsewhere.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: TUNSETIFF reads a struct ifreq, which IfReq lays out (40 bytes).
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error()).context("TUNSETIFF");
    }
    set_nonblocking(fd.as_raw_fd())?;
    Ok(fd)
}

fn set_nonblocking(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error()).context("O_NONBLOCK");
        }
    }
    Ok(())
}

/// Nanoseconds since the router started.
fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

fn write_pkt(out: RawFd, pkt: &[u8], c: &Counts) {
    // SAFETY: writes a buffer we own to a descriptor that outlives the forwarding threads.
    let n = unsafe { libc::write(out, pkt.as_ptr().cast(), pkt.len()) };
    if n == pkt.len() as isize {
        c.packets.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(pkt.len() as u64, Ordering::Relaxed);
    } else {
        c.write_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits until `fd` is readable or `timeout` has passed.
fn wait_readable(fd: RawFd, timeout: Duration) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one pollfd on the stack, a valid timespec, no signal mask change.
    unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
}

/// One direction until `stop`: reads `inp`, decides, queues, writes `out`.
fn forward(
    inp: RawFd,
    out: RawFd,
    mut sched: Schedule,
    epoch: Instant,
    c: &Counts,
    stop: &AtomicBool,
) {
    let mut q = Queue::default();
    let mut buf = vec![0u8; 65_536 + 4];
    while !stop.load(Ordering::Relaxed) {
        let mut now = now_ns(epoch);
        while let Some(pkt) = q.pop_due(now) {
            write_pkt(out, &pkt, c);
        }
        let wait = q.next_at().map_or(IDLE, |at| {
            Duration::from_nanos(at.saturating_sub(now)).min(IDLE)
        });
        if !wait.is_zero() {
            wait_readable(inp, wait);
        }
        for _ in 0..BATCH {
            // SAFETY: reads into a buffer we own, at most its length.
            let n = unsafe { libc::read(inp, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break; // EAGAIN: nothing more for now
            }
            let pkt = &buf[..n as usize];
            now = now_ns(epoch);
            match sched.decide(now, pkt.len(), q.held) {
                Verdict::Lost => {
                    c.lost.fetch_add(1, Ordering::Relaxed);
                }
                Verdict::QueueFull => {
                    c.queue_full.fetch_add(1, Ordering::Relaxed);
                }
                Verdict::Send { at, copies } => {
                    if copies > 1 {
                        c.duplicated.fetch_add(1, Ordering::Relaxed);
                    }
                    if at <= now && q.is_empty() {
                        // Due already and nothing before it: straight out, no copy.
                        for _ in 0..copies {
                            write_pkt(out, pkt, c);
                        }
                    } else {
                        for _ in 0..copies {
                            q.push(at, pkt.to_vec());
                        }
                        c.peak_held.fetch_max(q.held, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts after), so that
/// [`wait_for_signal`] gets them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is filled by sigemptyset; the mask change is for this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: set is a valid, blocked signal set.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// Runs the router until SIGINT or SIGTERM, then prints its counters. Call it before any other
/// thread exists (the signals must be blocked in every thread).
pub fn run(a: &Side, b: &Side, s: Settings, seed: u64) -> Result<()> {
    if !(0.0..=1.0).contains(&s.loss) || !(0.0..=1.0).contains(&s.duplicate) {
        bail!("probabilities are fractions, 0.0 to 1.0");
    }
    let set = block_signals();
    let fa = open_tun(a)?;
    let fb = open_tun(b)?;
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = [Arc::new(Counts::default()), Arc::new(Counts::default())];
    let dirs = [
        (fa.as_raw_fd(), fb.as_raw_fd(), seed),
        (
            fb.as_raw_fd(),
            fa.as_raw_fd(),
            seed.rotate_left(17) ^ 0x5bd1_e995,
        ),
    ];
    let threads: Vec<_> = dirs
        .into_iter()
        .zip(counts.iter().cloned())
        .enumerate()
        .map(|(i, ((inp, out, seed), c))| {
            let (stop, sched) = (stop.clone(), Schedule::new(s.clone(), seed));
            std::thread::Builder::new()
                .name(format!("router-{}", if i == 0 { "ab" } else { "ba" }))
                .spawn(move || forward(inp, out, sched, epoch, &c, &stop))
        })
        .collect::<io::Result<_>>()?;
    println!(
        "router: {}:{} <-> {}:{}, {s:?}, seed {seed}",
        a.netns, a.ifname, b.netns, b.ifname
    );
    let sig = wait_for_signal(&set);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!(
        "router: signal {sig} after {:.1} s",
        epoch.elapsed().as_secs_f64()
    );
    println!("router: {} -> {}: {}", a.netns, b.netns, counts[0].report());
    println!("router: {} -> {}: {}", b.netns, a.netns, counts[1].report());
    drop((fa, fb));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn sched(s: Settings) -> Schedule {
        Schedule::new(s, 7)
    }

    #[test]
    fn clean_link_sends_everything_now_once() {
        let mut s = sched(Settings::default());
        for t in 0..1000 {
            assert_eq!(s.decide(t, 1500, 0), Verdict::Send { at: t, copies: 1 });
        }
    }

    #[test]
    fn delay_is_added_to_the_arrival() {
        let mut s = sched(Settings {
            delay: Duration::from_millis(25),
            ..Default::default()
        });
        assert_eq!(
            s.decide(3 * MS, 100, 0),
            Verdict::Send {
                at: 28 * MS,
                copies: 1
            }
        );
    }

    #[test]
    fn loss_rate_is_about_the_probability_and_seeded() {
        let lost = |seed| {
            let mut s = Schedule::new(
                Settings {
                    loss: 0.01,
                    ..Default::default()
                },
                seed,
            );
            (0..100_000)
                .filter(|&t| s.decide(t, 1500, 0) == Verdict::Lost)
                .count()
        };
        let n = lost(1);
        assert!((800..1200).contains(&n), "{n} of 100,000 lost at 1 %");
        assert_eq!(n, lost(1), "same seed, same losses");
        assert_ne!(n, lost(2));
    }

    #[test]
    fn extremes_of_probability() {
        let mut p = Prng::new(3);
        assert!((0..10_000).all(|_| !p.chance(0.0)));
        assert!((0..10_000).all(|_| p.chance(1.0)));
    }

    #[test]
    fn duplicates_at_about_the_probability() {
        let mut s = sched(Settings {
            duplicate: 0.1,
            ..Default::default()
        });
        let dup = (0..10_000)
            .filter(|&t| matches!(s.decide(t, 100, 0), Verdict::Send { copies: 2, .. }))
            .count();
        assert!((800..1200).contains(&dup), "{dup}");
    }

    #[test]
    fn jitter_stays_within_bounds_and_reorders() {
        let mut s = sched(Settings {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(2),
            ..Default::default()
        });
        let ats: Vec<u64> = (0..1000)
            .map(|i| match s.decide(i * 1000, 100, 0) {
                Verdict::Send { at, .. } => at - i * 1000,
                v => panic!("{v:?}"),
            })
            .collect();
        assert!(ats.iter().all(|&d| (10 * MS..=12 * MS).contains(&d)));
        assert!(ats.windows(2).any(|w| w[1] < w[0]));
    }

    #[test]
    fn rate_serialises_packets() {
        // 1 MB/s: a 1000-byte packet takes 1 ms on the link.
        let mut s = sched(Settings {
            rate: Some(1e6),
            ..Default::default()
        });
        let at = |v| match v {
            Verdict::Send { at, .. } => at,
            v => panic!("{v:?}"),
        };
        assert_eq!(at(s.decide(0, 1000, 0)), MS);
        assert_eq!(at(s.decide(0, 1000, 0)), 2 * MS);
        assert_eq!(s.backlog(0), 2000);
        assert_eq!(s.backlog(MS), 1000);
        // After an idle spell the link starts from the arrival again.
        assert_eq!(at(s.decide(10 * MS, 1000, 0)), 11 * MS);
    }

    #[test]
    fn rate_queue_is_drop_tail_at_the_bound() {
        let mut s = sched(Settings {
            rate: Some(1e6),
            queue_bytes: 3000,
            ..Default::default()
        });
        let v: Vec<_> = (0..5).map(|_| s.decide(0, 1000, 0)).collect();
        assert!(matches!(v[2], Verdict::Send { .. }));
        assert_eq!(v[3], Verdict::QueueFull);
        assert_eq!(v[4], Verdict::QueueFull);
        // Once the link has drained some, packets fit again.
        assert!(matches!(s.decide(MS, 1000, 0), Verdict::Send { .. }));
    }

    #[test]
    fn without_rate_the_bound_is_on_what_is_held() {
        let mut s = sched(Settings {
            delay: Duration::from_millis(50),
            queue_bytes: 10_000,
            ..Default::default()
        });
        assert!(matches!(s.decide(0, 1000, 9000), Verdict::Send { .. }));
        assert_eq!(s.decide(0, 1000, 9001), Verdict::QueueFull);
    }

    #[test]
    fn queue_releases_in_time_order_then_arrival() {
        let mut q = Queue::default();
        q.push(30, vec![3]);
        q.push(10, vec![1]);
        q.push(10, vec![2, 2]);
        q.push(20, vec![4]);
        assert_eq!(q.held, 5);
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.next_at(), Some(10));
        let out: Vec<_> = std::iter::from_fn(|| q.pop_due(25)).collect();
        assert_eq!(out, vec![vec![1], vec![2, 2], vec![4]]);
        assert_eq!(q.held, 1);
        assert_eq!(q.pop_due(30), Some(vec![3]));
        assert!(q.is_empty());
    }

    #[test]
    fn side_parses() {
        let s: Side = "ferrybench-a:fbt-a".parse().unwrap();
        assert_eq!(
            (s.netns.as_str(), s.ifname.as_str()),
            ("ferrybench-a", "fbt-a")
        );
        assert!("nocolon".parse::<Side>().is_err());
        assert!("ns:an-interface-name-too-long".parse::<Side>().is_err());
    }
}
