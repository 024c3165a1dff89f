//! Ferry's congestion controller: CUBIC that reacts to a loss only when the loss means
//! congestion.
//!
//! Loss-based controllers read every lost packet as a full queue and cut the window by 30 %.
//! On a link that loses packets at random (Wi-Fi, a long path) that caps a flow near
//! `1.22·MSS/(RTT·√p)` whatever the link could carry: 0.34 MB/s at 50 ms RTT and 1 % loss.
//! Congestion has two other signs random loss does not: the queue in front of the bottleneck
//! grows first, so the smoothed RTT rises above the path's minimum; and when the queue
//! overflows, many packets go at once. So a loss reaches CUBIC only when
//! - the smoothed RTT stands more than half the minimum RTT (and at least 1 ms) above that
//!   minimum — a queue of half a bandwidth-delay product, enough that CUBIC's 30 % cut leaves
//!   the link full;
//! - or more than [`HEAVY_LOSS_PERCENT`] of the bytes of the last two round trips were lost
//!   (a bottleneck whose buffer is too shallow to show up in the RTT);
//! - or the peer's ECN marks say so, or the loss is persistent congestion (always real).
//!
//! Everything else (the window's growth, recovery, the pacing quinn derives from the window) is
//! quinn's CUBIC, unchanged; a clean path behaves exactly as with CUBIC.
//!
//! Why not quinn's BBR, which was tried first: its bandwidth filter only ever takes a sample
//! larger than its current estimate (`bw_estimation.rs`: `if max_filter.get() < bandwidth`), and
//! a sample is one packet's bytes over the gap between two acks, so one quick pair of acks sets
//! an estimate that never decays. Its window then stops tracking the path: loss-tolerant, but
//! also blind to real congestion, which made our suite flaky (see `docs/ARCHITECTURE.md`).

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics, Cubic, CubicConfig};
use quinn_proto::RttEstimator;

/// Losses above this share of the last two round trips' bytes are congestion even without a
/// queue in the RTT. Random loss stays far below it (the links we target lose 0.5–5 %).
pub const HEAVY_LOSS_PERCENT: u64 = 10;

/// Fewer lost packets than this in the window are never "heavy": with a small window one loss
/// is a large share by chance.
const HEAVY_LOSS_MIN_PACKETS: u64 = 8;

/// What the controller knows when a loss is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossSignal {
    pub persistent: bool,
    /// ECN congestion marks (quinn reports them as a congestion event with no lost bytes).
    pub ecn: bool,
    pub smoothed_rtt: Duration,
    pub min_rtt: Duration,
    /// Bytes lost and acknowledged over the last two round trips, this loss included.
    pub lost: u64,
    pub acked: u64,
    pub mtu: u64,
}

/// Whether a loss is congestion (CUBIC cuts its window) or random loss (ignored).
pub fn is_congestion(s: &LossSignal) -> bool {
    if s.persistent || s.ecn {
        return true;
    }
    let queue = s.smoothed_rtt.saturating_sub(s.min_rtt);
    if queue > (s.min_rtt / 2).max(Duration::from_millis(1)) {
        return true;
    }
    let total = s.lost + s.acked;
    s.lost >= HEAVY_LOSS_MIN_PACKETS * s.mtu && s.lost * 100 > HEAVY_LOSS_PERCENT * total
}

/// Bytes acknowledged and lost in the current and the previous round trip.
#[derive(Debug, Clone, Default)]
struct Rounds {
    started: Option<Instant>,
    current: (u64, u64),
    previous: (u64, u64),
}

impl Rounds {
    /// Starts a new round when the current one has lasted a round trip.
    fn roll(&mut self, now: Instant, rtt: Duration) {
        match self.started {
            Some(t) if now.saturating_duration_since(t) < rtt => {}
            _ => {
                self.previous = std::mem::take(&mut self.current);
                self.started = Some(now);
            }
        }
    }

    fn acked(&self) -> u64 {
        self.current.0 + self.previous.0
    }

    fn lost(&self) -> u64 {
        self.current.1 + self.previous.1
    }
}

/// CUBIC behind the [`is_congestion`] gate.
#[derive(Debug, Clone)]
pub struct Tolerant {
    cubic: Cubic,
    rounds: Rounds,
    smoothed_rtt: Duration,
    min_rtt: Duration,
    mtu: u64,
}

impl Controller for Tolerant {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.cubic.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.smoothed_rtt = rtt.get();
        self.min_rtt = rtt.min();
        self.rounds.roll(now, self.smoothed_rtt);
        self.rounds.current.0 += bytes;
        self.cubic.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.cubic
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.rounds.roll(now, self.smoothed_rtt);
        self.rounds.current.1 += lost_bytes;
        let signal = LossSignal {
            persistent: is_persistent_congestion,
            ecn: lost_bytes == 0,
            smoothed_rtt: self.smoothed_rtt,
            min_rtt: self.min_rtt,
            lost: self.rounds.lost(),
            acked: self.rounds.acked(),
            mtu: self.mtu,
        };
        if is_congestion(&signal) {
            self.cubic
                .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
        }
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.mtu = new_mtu.into();
        self.cubic.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.cubic.window()
    }

    fn metrics(&self) -> ControllerMetrics {
        self.cubic.metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.cubic.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Builds a [`Tolerant`] controller per connection.
#[derive(Debug, Default)]
pub struct TolerantConfig {
    cubic: Arc<CubicConfig>,
}

impl ControllerFactory for TolerantConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Tolerant {
            cubic: Cubic::new(self.cubic.clone(), now, current_mtu),
            rounds: Rounds::default(),
            smoothed_rtt: Duration::ZERO,
            min_rtt: Duration::ZERO,
            mtu: current_mtu.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn signal(srtt: Duration, min: Duration, lost: u64, acked: u64) -> LossSignal {
        LossSignal {
            persistent: false,
            ecn: false,
            smoothed_rtt: srtt,
            min_rtt: min,
            lost,
            acked,
            mtu: 1200,
        }
    }

    #[test]
    fn random_loss_on_an_empty_queue_is_ignored() {
        // 1 % of two round trips at 20 ms, RTT at its minimum.
        assert!(!is_congestion(&signal(20 * MS, 20 * MS, 12_000, 1_188_000)));
        // 5 % with RTT jitter well under half the minimum.
        assert!(!is_congestion(&signal(28 * MS, 20 * MS, 60_000, 1_140_000)));
        // A handful of losses in a small window: a large share, but by chance.
        assert!(!is_congestion(&signal(
            20 * MS,
            20 * MS,
            3 * 1200,
            10 * 1200
        )));
    }

    #[test]
    fn a_growing_queue_makes_any_loss_congestion() {
        assert!(is_congestion(&signal(31 * MS, 20 * MS, 1200, 1_000_000)));
        // On a sub-millisecond path the threshold is 1 ms, not half of almost nothing.
        assert!(!is_congestion(&signal(
            Duration::from_micros(900),
            Duration::from_micros(60),
            1200,
            1_000_000
        )));
        assert!(is_congestion(&signal(
            Duration::from_micros(1_200),
            Duration::from_micros(60),
            1200,
            1_000_000
        )));
    }

    #[test]
    fn heavy_loss_is_congestion_without_a_queue() {
        assert!(is_congestion(&signal(20 * MS, 20 * MS, 120_000, 880_000)));
        assert!(!is_congestion(&signal(20 * MS, 20 * MS, 90_000, 910_000)));
    }

    #[test]
    fn ecn_and_persistent_congestion_always_count() {
        let mut s = signal(20 * MS, 20 * MS, 0, 1_000_000);
        s.ecn = true;
        assert!(is_congestion(&s));
        let mut s = signal(20 * MS, 20 * MS, 1200, 1_000_000);
        s.persistent = true;
        assert!(is_congestion(&s));
    }

    #[test]
    fn rounds_keep_two_round_trips() {
        let t0 = Instant::now();
        let mut r = Rounds::default();
        r.roll(t0, 10 * MS);
        r.current.0 += 100;
        r.roll(t0 + 5 * MS, 10 * MS);
        r.current.1 += 7;
        assert_eq!((r.acked(), r.lost()), (100, 7));
        r.roll(t0 + 11 * MS, 10 * MS);
        r.current.0 += 50;
        assert_eq!((r.acked(), r.lost()), (150, 7));
        r.roll(t0 + 22 * MS, 10 * MS);
        assert_eq!((r.acked(), r.lost()), (50, 0));
    }

    /// The controller itself: random loss leaves the window alone, a queued loss cuts it.
    #[test]
    fn the_gate_decides_whether_cubic_sees_the_loss() {
        let cfg = Arc::new(TolerantConfig::default());
        let t0 = Instant::now();
        let mut c = cfg.build(t0, 1200);
        let before = c.window();
        // No RTT sample yet: min and smoothed are both zero, a loss is judged by its share.
        c.on_congestion_event(t0 + MS, t0, false, 1200);
        assert_eq!(c.window(), before, "one lost packet is not congestion");
        c.on_congestion_event(t0 + 2 * MS, t0 + MS, false, 0);
        assert!(c.window() < before, "an ECN mark is");
    }
}
