//! Rate limits where the bytes leave: a [`Pacer`] spaces out what a node sends one receiver,
//! over every request that receiver has open at once.
//!
//! It keeps a virtual clock: each piece of `n` bytes is given the next free slot of
//! `n / rate` seconds and waits for the start of it. Idle time is not saved up, so a receiver
//! that was quiet gets no burst beyond one piece.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Pacer {
    bytes_per_sec: AtomicU64,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// `bytes_per_sec` must be at least 1.
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: AtomicU64::new(bytes_per_sec.max(1)),
            next: Mutex::new(None),
        }
    }

    pub fn rate(&self) -> u64 {
        self.bytes_per_sec.load(Ordering::Relaxed)
    }

    /// Takes effect from the next piece on.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.bytes_per_sec.store(bytes_per_sec.max(1), Ordering::Relaxed);
    }

    /// The size of pieces to send at this rate: about an eighth of a second's worth, so the
    /// pace is smooth, within 16 KiB – 1 MiB.
    pub fn piece(&self) -> usize {
        usize::try_from(self.rate() / 8)
            .unwrap_or(usize::MAX)
            .clamp(16 << 10, 1 << 20)
    }

    /// Waits until `n` more bytes may go.
    pub async fn take(&self, n: usize) {
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            let secs = n as f64 / self.rate() as f64;
            *next = Some(start + Duration::from_secs_f64(secs));
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pieces_are_spaced_at_the_rate() {
        let p = Pacer::new(1_000_000);
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

    #[test]
    fn pieces_are_bounded() {
        assert_eq!(Pacer::new(1).piece(), 16 << 10);
        assert_eq!(Pacer::new(800_000).piece(), 100_000);
        assert_eq!(Pacer::new(u64::MAX).piece(), 1 << 20);
    }
}
