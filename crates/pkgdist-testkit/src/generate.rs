//! Deterministic, seeded content: the same seed gives the same bytes on every machine, so tests
//! and benchmarks are repeatable without committing data.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// xoshiro256** seeded through SplitMix64: fast (several GB/s) and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(&mut v);
        v
    }
}

const WORDS: &[&str] = &[
    "driver", "package", "setup", "install", "windows", "system32", "config", "update", "x64", "resource", "manifest",
    "version", "the", "of", "and", "registry", "service", "\r\n", "=", "1",
];

/// Fills `buf` with text-like bytes that zstd compresses about 4:1.
fn fill_text(rng: &mut Rng, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes();
        let n = w.len().min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&w[..n]);
        i += n;
        if i < buf.len() {
            buf[i] = b' ';
            i += 1;
        }
    }
}

/// Writes `size` bytes that behave like an OS image: 1 MiB blocks, about half random
/// (already-compressed payloads), a quarter text-like, the rest zeros or a repeated block.
pub fn write_image(path: &Path, seed: u64, size: u64) -> io::Result<()> {
    let mut rng = Rng::new(seed);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let repeated = rng.bytes(1 << 20);
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        match rng.below(8) {
            0..=3 => rng.fill(&mut block[..n]),
            4 | 5 => fill_text(&mut rng, &mut block[..n]),
            6 => block[..n].fill(0),
            _ => block[..n].copy_from_slice(&repeated[..n]),
        }
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Writes `files` small files of mixed sizes (mostly under 64 KiB, a few up to 1 MiB) spread
/// over nested folders. Returns the total bytes written.
pub fn write_tree(root: &Path, seed: u64, files: usize) -> io::Result<u64> {
    let mut rng = Rng::new(seed);
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..files {
        let dir = root.join(format!("d{:02}/s{:02}", rng.below(16), rng.below(8)));
        fs::create_dir_all(&dir)?;
        let size = match rng.below(100) {
            0..=59 => rng.below(4096),
            60..=94 => 4096 + rng.below(60 << 10),
            _ => (64 << 10) + rng.below(960 << 10),
        } as usize;
        if rng.below(2) == 0 {
            rng.fill(&mut buf[..size]);
        } else {
            fill_text(&mut rng, &mut buf[..size]);
        }
        fs::write(dir.join(format!("f{i:06}.bin")), &buf[..size])?;
        total += size as u64;
    }
    Ok(total)
}
