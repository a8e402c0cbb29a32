//! Content-defined chunking of a byte stream with FastCDC v2020.
//!
//! fastcdc's own `StreamCDC` allocates a `Vec` for every chunk and shifts its whole buffer down
//! after each one. This reader keeps one large buffer, hands out chunks as slices of it, and
//! only moves the short unprocessed tail when it refills, so chunks that are already in the
//! library never get copied at all. The cut points are exactly FastCDC's: a cut is only searched
//! for once `max_size` bytes are buffered (or the stream has ended), which is all `cut` looks at.

use std::io::{self, ErrorKind, Read};

use fastcdc::v2020::{Normalization, cut, select_masks};
use pkgdist_core::{ChunkParams, ManifestError};

/// Chunking parameters with FastCDC's masks worked out once.
#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    params: ChunkParams,
    mask_s: u64,
    mask_l: u64,
}

impl Chunker {
    pub fn new(params: ChunkParams) -> Result<Self, ManifestError> {
        params.validate()?;
        let level = match params.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        };
        let (mask_s, mask_l) = select_masks(params.avg_size as usize, level);
        Ok(Self { params, mask_s, mask_l })
    }

    pub fn params(&self) -> ChunkParams {
        self.params
    }

    /// Chunks a reader. `buffer_size` is rounded up to at least twice the maximum chunk size.
    pub fn stream<R: Read>(&self, reader: R, buffer_size: usize) -> ChunkStream<R> {
        let size = buffer_size.max(2 * self.params.max_size as usize);
        ChunkStream {
            chunker: *self,
            reader,
            buf: vec![0; size],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Length of the next chunk at the front of `data`, given that `data` holds either at least
    /// `max_size` bytes or everything up to the end of the stream.
    fn next_len(&self, data: &[u8]) -> usize {
        let p = &self.params;
        let (_, len) = cut(
            data,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        len
    }
}

/// A stream of chunks over a reader; see [`Chunker::stream`].
#[derive(Debug)]
pub struct ChunkStream<R> {
    chunker: Chunker,
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> ChunkStream<R> {
    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        let max = self.chunker.params.max_size as usize;
        loop {
            let avail = self.end - self.start;
            if avail >= max || (self.eof && avail > 0) {
                let len = self.chunker.next_len(&self.buf[self.start..self.end]);
                if len == 0 {
                    return Ok(None);
                }
                let chunk = &self.buf[self.start..self.start + len];
                self.start += len;
                return Ok(Some(chunk));
            }
            if self.eof {
                return Ok(None);
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            while self.end < self.buf.len() {
                match self.reader.read(&mut self.buf[self.end..]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => self.end += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
