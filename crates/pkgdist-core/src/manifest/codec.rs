//! The manifest's canonical byte strings, both formats (layout in the parent module's
//! documentation). Decoding only parses; `Manifest::decode` then checks every invariant.

use super::{
    ChunkParams, ChunkRef, Entry, EntryKind, FileData, Format, Hole, Manifest, ManifestError, RelPath, Timestamp, Xattr,
};
use crate::digest::Digest;

const MAGIC_V1: &[u8; 8] = b"PKGDMAN1";
const MAGIC_V2: &[u8; 8] = b"PKGDMAN2";

fn kind_tag(k: &EntryKind) -> u8 {
    match k {
        EntryKind::Directory => 0,
        EntryKind::File(_) => 1,
        EntryKind::Symlink { .. } => 2,
        EntryKind::HardLink { .. } => 3,
        EntryKind::CharDevice { .. } => 4,
        EntryKind::BlockDevice { .. } => 5,
        EntryKind::Fifo => 6,
    }
}

pub(super) fn encode(m: &Manifest) -> Vec<u8> {
    let v2 = m.format == Format::V2;
    let chunk_count: usize = m.files().map(|(_, f)| f.chunks.len()).sum();
    let mut out = Vec::with_capacity(32 + m.entries.len() * 72 + chunk_count * 36);
    out.extend_from_slice(if v2 { MAGIC_V2 } else { MAGIC_V1 });
    out.push(ChunkParams::ALGORITHM_FASTCDC_2020);
    out.push(m.chunker.normalization);
    for v in [m.chunker.min_size, m.chunker.avg_size, m.chunker.max_size] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    put_u32(&mut out, m.entries.len());
    for e in &m.entries {
        put_str(&mut out, e.path.as_str());
        out.push(kind_tag(&e.kind));
        out.extend_from_slice(&e.mode.to_le_bytes());
        out.extend_from_slice(&e.mtime.secs.to_le_bytes());
        out.extend_from_slice(&e.mtime.nanos.to_le_bytes());
        if v2 {
            out.extend_from_slice(&e.uid.to_le_bytes());
            out.extend_from_slice(&e.gid.to_le_bytes());
            // Bounded by `check_xattrs`; saturating keeps an absurd in-memory value refusable.
            out.extend_from_slice(&u16::try_from(e.xattrs.len()).unwrap_or(u16::MAX).to_le_bytes());
            for x in &e.xattrs {
                let n = u8::try_from(x.name.len()).unwrap_or(u8::MAX);
                out.push(n);
                out.extend_from_slice(&x.name.as_bytes()[..usize::from(n)]);
                put_u32(&mut out, x.value.len());
                out.extend_from_slice(&x.value);
            }
        }
        match &e.kind {
            EntryKind::Directory | EntryKind::Fifo => {}
            EntryKind::File(f) => {
                out.extend_from_slice(&f.size.to_le_bytes());
                out.extend_from_slice(f.hash.as_bytes());
                put_u32(&mut out, f.chunks.len());
                for c in &f.chunks {
                    out.extend_from_slice(c.id.as_bytes());
                    out.extend_from_slice(&c.len.to_le_bytes());
                }
                if v2 {
                    put_u32(&mut out, f.holes.len());
                    for h in &f.holes {
                        out.extend_from_slice(&h.offset.to_le_bytes());
                        out.extend_from_slice(&h.len.to_le_bytes());
                    }
                }
            }
            EntryKind::Symlink { target } => put_str(&mut out, target),
            EntryKind::HardLink { target } => put_str(&mut out, target.as_str()),
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                out.extend_from_slice(&major.to_le_bytes());
                out.extend_from_slice(&minor.to_le_bytes());
            }
        }
    }
    out
}

pub(super) fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let mut r = Reader { buf: bytes };
    let format = match r.take(8)? {
        m if m == MAGIC_V1 => Format::V1,
        m if m == MAGIC_V2 => Format::V2,
        _ => return Err(ManifestError::Magic),
    };
    let v2 = format == Format::V2;
    if r.u8()? != ChunkParams::ALGORITHM_FASTCDC_2020 {
        return Err(ManifestError::Malformed("unknown chunking algorithm"));
    }
    let chunker = ChunkParams {
        normalization: r.u8()?,
        min_size: r.u32()?,
        avg_size: r.u32()?,
        max_size: r.u32()?,
    };
    chunker.validate()?;
    let count = r.u32()? as usize;
    // Smallest entry: 2 (path len) + 1 (path) + 1 + 4 + 12 bytes (and 10 more in format 2).
    let mut entries: Vec<Entry> = Vec::with_capacity(count.min(r.buf.len() / 20));
    for _ in 0..count {
        let path = RelPath::new(r.string()?)?;
        // Order checked as entries come, not after: a body repeating one entry (which
        // compresses to nothing) is refused at its second, before it costs memory.
        if entries
            .last()
            .is_some_and(|prev| prev.path.as_str().as_bytes() >= path.as_str().as_bytes())
        {
            return Err(ManifestError::Order(path.to_string()));
        }
        let tag = r.u8()?;
        let mode = r.u32()?;
        let mtime = Timestamp {
            secs: r.i64()?,
            nanos: r.u32()?,
        };
        let mut e = Entry::new(path, mode, mtime, EntryKind::Directory);
        if v2 {
            e.uid = r.u32()?;
            e.gid = r.u32()?;
            let n = usize::from(u16::from_le_bytes(r.array()?));
            e.xattrs = Vec::with_capacity(n.min(r.buf.len() / 6));
            for _ in 0..n {
                let len = usize::from(r.u8()?);
                let name = String::from_utf8(r.take(len)?.to_vec())
                    .map_err(|_| ManifestError::Malformed("an attribute name is not UTF-8"))?;
                let len = r.u32()? as usize;
                let value = r.take(len)?.to_vec();
                e.xattrs.push(Xattr { name, value });
            }
        }
        e.kind = match tag {
            0 => EntryKind::Directory,
            1 => {
                let size = r.u64()?;
                let hash = Digest(r.array()?);
                let n = r.u32()? as usize;
                let mut chunks = Vec::with_capacity(n.min(r.buf.len() / 36));
                for _ in 0..n {
                    chunks.push(ChunkRef {
                        id: Digest(r.array()?),
                        len: r.u32()?,
                    });
                }
                let mut holes = Vec::new();
                if v2 {
                    let n = r.u32()? as usize;
                    holes.reserve(n.min(r.buf.len() / 16));
                    for _ in 0..n {
                        holes.push(Hole {
                            offset: r.u64()?,
                            len: r.u64()?,
                        });
                    }
                }
                EntryKind::File(FileData {
                    size,
                    hash,
                    chunks,
                    holes,
                })
            }
            2 => EntryKind::Symlink { target: r.string()? },
            3 if v2 => EntryKind::HardLink {
                target: RelPath::new(r.string()?)?,
            },
            4 if v2 => EntryKind::CharDevice {
                major: r.u32()?,
                minor: r.u32()?,
            },
            5 if v2 => EntryKind::BlockDevice {
                major: r.u32()?,
                minor: r.u32()?,
            },
            6 if v2 => EntryKind::Fifo,
            _ => return Err(ManifestError::Malformed("unknown entry kind")),
        };
        entries.push(e);
    }
    if !r.buf.is_empty() {
        return Err(ManifestError::Malformed("trailing bytes after the last entry"));
    }
    Ok(Manifest {
        chunker,
        entries,
        format,
    })
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Counts are bounded by construction (entries and chunks of a real tree); saturate rather
    // than wrap if someone builds an absurd manifest in memory, so decode refuses it.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ManifestError> {
        if self.buf.len() < n {
            return Err(ManifestError::Malformed("unexpected end of data"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ManifestError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ManifestError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, ManifestError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, ManifestError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, ManifestError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn string(&mut self) -> Result<String, ManifestError> {
        let len = u16::from_le_bytes(self.array()?);
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ManifestError::Malformed("a string is not UTF-8"))
    }
}
