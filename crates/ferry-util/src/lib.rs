//! The helpers every Ferry crate uses, in one place: locking a mutex that a panicked thread
//! may have poisoned, the wall clock as stored (Unix seconds or milliseconds), and [`text`],
//! the one list of characters never shown as they are.

// Nothing from the network or the disk may panic a node: errors are typed and returned. The
// compiler keeps that rule (tests may unwrap).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod text;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Locks `m`, also after a thread panicked while holding it. A panic there is a bug, but the
/// data behind Ferry's locks stays consistent enough to keep serving other peers and
/// transfers, where propagating the poison would stop the node.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Time since the Unix epoch; zero for a clock set before 1970.
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    since_epoch().as_secs() as i64
}

/// Now, in Unix milliseconds.
pub fn unix_now_ms() -> i64 {
    since_epoch().as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_opens_with_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = held.lock();
            panic!("poisons the lock");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }

    #[test]
    fn the_clock_agrees_with_itself() {
        let (s, ms) = (unix_now(), unix_now_ms());
        assert!(s > 1_600_000_000, "{s}");
        assert!((ms / 1000 - s).abs() <= 1, "{ms} {s}");
    }
}
