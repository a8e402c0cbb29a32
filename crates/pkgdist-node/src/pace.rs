//! Rate limits where the bytes leave: a [`Pacer`] spaces out what a node sends one receiver,
//! over every request that receiver has open at once, in one of ConfigMgr's modes ([`Limit`]).
//!
//! Rates and pulses keep a virtual clock: each piece of `n` bytes is given the next free slot
//! and waits for the start of it. Idle time is not saved up, so a receiver that was quiet gets
//! no burst beyond one piece.

use std::sync::Mutex;
use std::time::Duration;

use jiff::tz::TimeZone;
use tokio::time::Instant;

/// How much a receiver may be sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// At most this many bytes per second (pkgdist).
    Rate(u64),
    /// ConfigMgr's pulse mode: a block of `block` bytes, then a pause of `delay`.
    Pulse { block: u64, delay: Duration },
    /// ConfigMgr's "limited to specified maximum transfer rates by hour": in each local hour,
    /// sending for that hour's percentage of the time (the first part of every minute) and
    /// not at all for the rest. Time slicing, not a bandwidth measurement, as in ConfigMgr.
    Share { percent: [u8; 24], zone: TimeZone },
}

#[derive(Debug)]
pub struct Pacer {
    limit: Mutex<Limit>,
    next: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pacer {
    pub fn new(limit: Limit) -> Self {
        Self {
            limit: Mutex::new(limit),
            next: Mutex::new(None),
        }
    }

    pub fn limit(&self) -> Limit {
        lock(&self.limit).clone()
    }

    /// Takes effect from the next piece on.
    pub fn set(&self, limit: Limit) {
        let mut l = lock(&self.limit);
        if *l != limit {
            *l = limit;
        }
    }

    /// The size of pieces to send: for a rate about an eighth of a second's worth, so the pace
    /// is smooth; for a pulse the block; within 1 KiB – 1 MiB.
    pub fn piece(&self) -> usize {
        let n = match &*lock(&self.limit) {
            Limit::Rate(r) => r / 8,
            Limit::Pulse { block, .. } => *block,
            Limit::Share { .. } => 64 << 10,
        };
        usize::try_from(n).unwrap_or(usize::MAX).clamp(1 << 10, 1 << 20)
    }

    /// Waits until `n` more bytes may go.
    pub async fn take(&self, n: usize) {
        let limit = self.limit();
        let slot = match &limit {
            Limit::Rate(r) => n as f64 / (*r).max(1) as f64,
            Limit::Pulse { block, delay } => delay.as_secs_f64() * n as f64 / (*block).max(1) as f64,
            Limit::Share { percent, zone } => {
                // Wait for the sending part of a minute, as often as it takes.
                loop {
                    let now = jiff::Timestamp::now().to_zoned(zone.clone());
                    let hour = usize::try_from(now.hour()).unwrap_or(0) % 24;
                    let into_minute = f64::from(now.second()) + f64::from(now.subsec_nanosecond()) / 1e9;
                    let wait = share_wait(percent[hour], into_minute);
                    if wait.is_zero() {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let start = {
            let mut next = lock(&self.next);
            let now = Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            *next = Some(start + Duration::from_secs_f64(slot));
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// How long to wait, `into_minute` seconds into a minute, before sending is allowed under a
/// `percent` share of the time.
pub fn share_wait(percent: u8, into_minute: f64) -> Duration {
    if percent >= 100 {
        return Duration::ZERO;
    }
    let open = 60.0 * f64::from(percent) / 100.0;
    if into_minute < open {
        Duration::ZERO
    } else {
        Duration::from_secs_f64((60.0 - into_minute).max(0.01))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pieces_are_spaced_at_the_rate() {
        let p = Pacer::new(Limit::Rate(1_000_000));
        let t0 = Instant::now();
        // 10 MB in 100 kB pieces: the last one starts 9.9 s in.
        for _ in 0..100 {
            p.take(100_000).await;
        }
        let took = t0.elapsed().as_secs_f64();
        assert!((took - 9.9).abs() < 0.01, "took {took}");
        // Idle time is not banked: after a pause the next piece goes at once, the one after
        // waits its full slot.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let t1 = Instant::now();
        p.take(500_000).await;
        p.take(500_000).await;
        let took = t1.elapsed().as_secs_f64();
        assert!((took - 0.5).abs() < 0.01, "took {took}");
    }

    #[tokio::test(start_paused = true)]
    async fn pulses_send_a_block_then_pause() {
        let p = Pacer::new(Limit::Pulse {
            block: 64 << 10,
            delay: Duration::from_secs(2),
        });
        assert_eq!(p.piece(), 64 << 10);
        let t0 = Instant::now();
        for _ in 0..5 {
            p.take(64 << 10).await;
        }
        // Blocks go at 0, 2, 4, 6 and 8 s.
        let took = t0.elapsed().as_secs_f64();
        assert!((took - 8.0).abs() < 0.01, "took {took}");
    }

    #[test]
    fn shares_open_the_first_part_of_each_minute() {
        assert_eq!(share_wait(100, 59.0), Duration::ZERO);
        assert_eq!(share_wait(50, 10.0), Duration::ZERO);
        assert_eq!(share_wait(50, 40.0), Duration::from_secs(20));
        assert_eq!(share_wait(0, 0.0), Duration::from_secs(60));
        assert_eq!(share_wait(25, 14.9), Duration::ZERO);
        assert_eq!(share_wait(25, 15.0), Duration::from_secs(45));
    }

    #[test]
    fn pieces_are_bounded() {
        assert_eq!(Pacer::new(Limit::Rate(1)).piece(), 1 << 10);
        assert_eq!(Pacer::new(Limit::Rate(800_000)).piece(), 100_000);
        assert_eq!(Pacer::new(Limit::Rate(u64::MAX)).piece(), 1 << 20);
    }
}
