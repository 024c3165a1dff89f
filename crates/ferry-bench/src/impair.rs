//! A userspace network impairment proxy for UDP (this kernel has no netem). Used by the fault
//! tests (`ferry-core/tests/faults.rs` includes this file) and by `ferry-bench __impair` for
//! the two-namespace benchmark.
//!
//! One client talks to `Impair::addr`; the proxy relays each datagram to and from `upstream`
//! through its own socket, applying the current [`Rules`] in both directions: one-way delay,
//! loss, reordering (extra delay for some packets), duplication, corruption (a flipped bit in
//! the UDP payload, which QUIC's AEAD must catch), and a link that is down (everything dropped).
//! Rules change while traffic flows, which is how a test cuts and restores the link.
//!
//! Like a router, each direction holds at most [`QUEUE_LIMIT`] bytes waiting to leave, and drops
//! what comes beyond (counted apart from the loss asked for). Unbounded, a sender could park
//! megabytes in it whenever this proxy ran slower than the sender (a loaded machine): a queue
//! no real link has, inflating the RTT and with it QUIC's probe and idle timeouts (the idle
//! timeout is at least three probe timeouts) past anything a test means to model.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

/// Bytes each direction may hold waiting to leave (a router's buffer).
pub const QUEUE_LIMIT: usize = 2 << 20;

#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// One-way delay, each direction.
    pub delay: Duration,
    /// Fractions of packets, 0.0–1.0.
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    /// Everything dropped.
    pub down: bool,
}

/// What the proxy did, for the test's report.
#[derive(Debug, Default)]
pub struct Counts {
    pub relayed: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub corrupted: AtomicU64,
    pub reordered: AtomicU64,
    /// Dropped because the direction's queue was full.
    pub overflowed: AtomicU64,
}

pub struct Impair {
    pub addr: SocketAddr,
    rules: Arc<Mutex<Rules>>,
    pub counts: Arc<Counts>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Impair {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// xorshift64*: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

impl Impair {
    /// A proxy on a free loopback port.
    pub async fn start(upstream: SocketAddr, rules: Rules, seed: u64) -> Impair {
        Impair::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream, rules, seed).await
    }

    /// A proxy listening on `listen` (its upstream socket binds the same IP, any port).
    pub async fn start_on(
        listen: SocketAddr,
        upstream: SocketAddr,
        rules: Rules,
        seed: u64,
    ) -> Impair {
        let front = Arc::new(bind(listen));
        let back = Arc::new(bind(SocketAddr::new(listen.ip(), 0)));
        let addr = front.local_addr().unwrap();
        let rules = Arc::new(Mutex::new(rules));
        let counts = Arc::new(Counts::default());
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let up: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(Some(upstream)));
        let (to_up, t_up) = Line::new(back.clone(), up);
        let (to_client, t_client) = Line::new(front.clone(), client.clone());
        let t1 = {
            let (front, back, rules, counts, client) = (
                front.clone(),
                back.clone(),
                rules.clone(),
                counts.clone(),
                client.clone(),
            );
            tokio::spawn(async move {
                let mut rng = Rng(seed | 1);
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap() = Some(from);
                    let r = rules.lock().unwrap().clone();
                    relay(
                        &to_up,
                        (&back, Some(upstream)),
                        &buf[..n],
                        &r,
                        &mut rng,
                        &counts,
                    );
                }
            })
        };
        let t2 = {
            let (front, back, rules, counts) =
                (front.clone(), back.clone(), rules.clone(), counts.clone());
            tokio::spawn(async move {
                let mut rng = Rng(seed.rotate_left(17) | 1);
                let mut buf = vec![0u8; 65536];
                while let Ok((n, _)) = back.recv_from(&mut buf).await {
                    let to = *client.lock().unwrap();
                    let r = rules.lock().unwrap().clone();
                    relay(&to_client, (&front, to), &buf[..n], &r, &mut rng, &counts);
                }
            })
        };
        Impair {
            addr,
            rules,
            counts,
            tasks: vec![t1, t2, t_up, t_client],
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut Rules)) {
        f(&mut self.rules.lock().unwrap());
    }

    pub fn report(&self) -> String {
        let c = &self.counts;
        format!(
            "{} relayed, {} dropped, {} duplicated, {} corrupted, {} reordered, {} over the queue",
            c.relayed.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
            c.duplicated.load(Ordering::Relaxed),
            c.corrupted.load(Ordering::Relaxed),
            c.reordered.load(Ordering::Relaxed),
            c.overflowed.load(Ordering::Relaxed),
        )
    }
}

/// A UDP socket with large buffers: with the kernel's default the proxy itself would drop
/// QUIC's bursts, which is loss no one asked for. (Test and bench tooling: a socket that
/// cannot be made ends the run.)
fn bind(addr: SocketAddr) -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.set_nonblocking(true).unwrap();
    s.bind(&addr.into()).unwrap();
    UdpSocket::from_std(s.into()).unwrap()
}

/// One direction of the link: packets leave in the order they came, each after the delay
/// (independent timers would reorder packets sent in the same millisecond, which QUIC rightly
/// reads as loss).
#[derive(Clone)]
struct Line {
    tx: tokio::sync::mpsc::UnboundedSender<(tokio::time::Instant, Vec<u8>)>,
    queued: Arc<AtomicUsize>,
}

impl Line {
    fn new(
        sock: Arc<UdpSocket>,
        to: Arc<Mutex<Option<SocketAddr>>>,
    ) -> (Line, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
        let queued = Arc::new(AtomicUsize::new(0));
        let left = queued.clone();
        let task = tokio::spawn(async move {
            while let Some((at, pkt)) = rx.recv().await {
                tokio::time::sleep_until(at).await;
                let dest = *to.lock().unwrap();
                if let Some(dest) = dest {
                    let _ = sock.send_to(&pkt, dest).await;
                }
                left.fetch_sub(pkt.len(), Ordering::Relaxed);
            }
        });
        (Line { tx, queued }, task)
    }

    /// Queues `pkt` to leave at `at`, unless the queue is full.
    fn push(&self, at: tokio::time::Instant, pkt: Vec<u8>, c: &Counts) {
        if self.queued.load(Ordering::Relaxed) + pkt.len() > QUEUE_LIMIT {
            c.overflowed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(pkt.len(), Ordering::Relaxed);
        let _ = self.tx.send((at, pkt));
    }
}

fn relay(
    line: &Line,
    reorder_to: (&Arc<UdpSocket>, Option<SocketAddr>),
    pkt: &[u8],
    r: &Rules,
    rng: &mut Rng,
    c: &Counts,
) {
    if r.down || rng.chance(r.loss) {
        c.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut pkt = pkt.to_vec();
    if rng.chance(r.corrupt) && !pkt.is_empty() {
        let bit = (rng.next() % (pkt.len() as u64 * 8)) as usize;
        pkt[bit / 8] ^= 1 << (bit % 8);
        c.corrupted.fetch_add(1, Ordering::Relaxed);
    }
    let copies = if rng.chance(r.duplicate) {
        c.duplicated.fetch_add(1, Ordering::Relaxed);
        2
    } else {
        1
    };
    c.relayed.fetch_add(1, Ordering::Relaxed);
    let at = tokio::time::Instant::now() + r.delay;
    if rng.chance(r.reorder) {
        // Held back behind the packets that follow it.
        c.reordered.fetch_add(1, Ordering::Relaxed);
        let (sock, to) = (reorder_to.0.clone(), reorder_to.1);
        let extra = Duration::from_millis(5 + rng.next() % 20);
        tokio::spawn(async move {
            tokio::time::sleep_until(at + extra).await;
            if let Some(to) = to {
                for _ in 0..copies {
                    let _ = sock.send_to(&pkt, to).await;
                }
            }
        });
        return;
    }
    for _ in 0..copies {
        line.push(at, pkt.clone(), c);
    }
}
