//! Ways to damage a file on purpose, as disks and people do.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Inverts one byte in the middle of a file.
pub fn flip_byte(path: &Path) -> io::Result<()> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let at = len / 2;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(&mut b)?;
    f.seek(SeekFrom::Start(at))?;
    f.write_all(&[!b[0]])?;
    f.sync_all()
}

/// Cuts a file to half its length.
pub fn truncate_half(path: &Path) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    let len = f.metadata()?.len();
    f.set_len(len / 2)?;
    f.sync_all()
}

pub fn delete(path: &Path) -> io::Result<()> {
    fs::remove_file(path)
}
