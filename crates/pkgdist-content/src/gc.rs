//! Garbage collection: delete what no recorded version needs, never what one does.

use std::collections::HashSet;

use pkgdist_core::Digest;
use serde::Serialize;

use crate::error::{ContentError, Result};
use crate::library::Library;
use crate::store::Kind;

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub versions_kept: u64,
    pub manifests_removed: u64,
    pub chunks_removed: u64,
    /// Stored (possibly compressed) bytes the removed chunks took.
    pub bytes_freed: u64,
    /// Leftovers of interrupted writes.
    pub staging_removed: u64,
}

impl Library {
    /// Removes every manifest and chunk that no recorded version uses, plus leftovers of
    /// interrupted snapshots. Runs only with the library to itself (in this process and across
    /// processes), and refuses to delete anything if any recorded version's manifest cannot be
    /// read, since it could not tell which chunks that version needs.
    pub fn gc(&self) -> Result<GcReport> {
        let _span = tracing::info_span!("gc").entered();
        let _x = self.exclusive();
        self.store.lock_exclusive()?;
        let result = self.gc_locked();
        let unlocked = self.store.unlock_exclusive();
        let report = result?;
        unlocked?;
        tracing::info!(
            chunks = report.chunks_removed,
            bytes = report.bytes_freed,
            "garbage collected"
        );
        Ok(report)
    }

    fn gc_locked(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        let versions = self.versions()?;
        let mut live_manifests: HashSet<String> = HashSet::new();
        let mut live_chunks: HashSet<Digest> = HashSet::new();
        for &c in &versions {
            let id = self
                .manifest_id(c)
                .map_err(|e| ContentError::GcUnsafe(format!("the record of {c} is unreadable ({e})")))?
                .ok_or_else(|| ContentError::GcUnsafe(format!("{c} vanished during collection")))?;
            let m = self
                .load_manifest(&id)
                .map_err(|e| ContentError::GcUnsafe(format!("{c}: {e}")))?;
            live_manifests.insert(id.to_hex());
            live_chunks.extend(m.unique_chunks().into_iter().map(|c| c.id));
        }
        // Prestaged versions not yet recorded are kept too, with their chunks.
        for (c, id) in self
            .prestaged()
            .map_err(|e| ContentError::GcUnsafe(format!("the prestaged holds are unreadable ({e})")))?
        {
            let m = self
                .load_manifest(&id)
                .map_err(|e| ContentError::GcUnsafe(format!("prestaged {c}: {e}")))?;
            live_manifests.insert(id.to_hex());
            live_chunks.extend(m.unique_chunks().into_iter().map(|c| c.id));
        }
        report.versions_kept = versions.len() as u64;
        let live_refs: HashSet<String> = versions.iter().map(ToString::to_string).collect();

        for name in self.store.list(Kind::Stamps)? {
            if !live_refs.contains(&name) {
                self.store.delete(Kind::Stamps, &name)?;
            }
        }
        for name in self.store.list(Kind::Manifest)? {
            if !live_manifests.contains(&name) {
                self.store.delete(Kind::Manifest, &name)?;
                report.manifests_removed += 1;
            }
        }
        for name in self.store.list(Kind::Chunk)? {
            let live = name.parse::<Digest>().is_ok_and(|d| live_chunks.contains(&d));
            if !live {
                report.bytes_freed += self.store.size(Kind::Chunk, &name)?.unwrap_or(0);
                self.store.delete(Kind::Chunk, &name)?;
                report.chunks_removed += 1;
            }
        }
        report.staging_removed = self.store.clean_staging()?;
        self.store.flush()?;
        Ok(report)
    }
}
