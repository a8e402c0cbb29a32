//! Verification: re-hash what the library holds and say exactly what is missing or damaged,
//! and which files of which versions that affects. It never changes anything.

use std::collections::{BTreeMap, HashSet};

use pkgdist_core::{ContentId, Digest, Manifest};
use serde::Serialize;

use crate::error::{ContentError, Result};
use crate::library::{Library, check_chunk, check_object};
use crate::store::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Chunk,
    Manifest,
    Ref,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    Missing,
    Damaged,
}

/// A file of a version that a bad object breaks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Affected {
    pub content_id: ContentId,
    /// Empty when the whole version is affected (its manifest or ref).
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub object: ObjectKind,
    /// The chunk or manifest hash, or the content ID for a ref.
    pub id: String,
    pub fault: Fault,
    pub detail: String,
    /// What it breaks; empty for a chunk no retained version uses.
    pub affects: Vec<Affected>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub versions: Vec<ContentId>,
    pub chunks_checked: u64,
    pub bytes_checked: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Library {
    /// Verifies one version, or with `None` every version and every stored chunk.
    pub fn verify(&self, scope: Option<ContentId>) -> Result<VerifyReport> {
        let _span = tracing::info_span!("verify", scope = ?scope.map(|c| c.to_string())).entered();
        let versions = match scope {
            Some(c) if self.manifest_id(c)?.is_none() => {
                return Err(ContentError::UnknownContent(c));
            }
            Some(c) => vec![c],
            None => self.versions()?,
        };
        let mut report = VerifyReport {
            versions: versions.clone(),
            ..Default::default()
        };
        let mut manifests: Vec<(ContentId, Manifest)> = Vec::new();
        for &c in &versions {
            match self.manifest_id(c) {
                Ok(Some(id)) => match self.load_manifest(&id) {
                    Ok(m) => manifests.push((c, m)),
                    Err(e) => report
                        .problems
                        .push(whole_version(ObjectKind::Manifest, id.to_hex(), &e, c)),
                },
                Ok(None) => {}
                Err(e) => report
                    .problems
                    .push(whole_version(ObjectKind::Ref, c.to_string(), &e, c)),
            }
        }

        // Check each distinct chunk once; remember only the bad ones.
        let mut checked: HashSet<Digest> = HashSet::new();
        let mut bad: BTreeMap<Digest, (Fault, String)> = BTreeMap::new();
        for (_, m) in &manifests {
            for c in m.unique_chunks() {
                if !checked.insert(c.id) {
                    continue;
                }
                report.chunks_checked += 1;
                report.bytes_checked += u64::from(c.len);
                // A read error (a bad sector, say) is damage to report, not a reason to stop.
                match self.store.get(Kind::Chunk, &c.id.to_hex()) {
                    Ok(None) => {
                        bad.insert(c.id, (Fault::Missing, "not in the library".into()));
                    }
                    Ok(Some(stored)) => {
                        if let Err(why) = check_chunk(&stored, &c) {
                            bad.insert(c.id, (Fault::Damaged, why));
                        }
                    }
                    Err(e) => {
                        bad.insert(c.id, (Fault::Damaged, format!("cannot be read: {e}")));
                    }
                }
            }
        }
        let mut affects: BTreeMap<Digest, Vec<Affected>> = BTreeMap::new();
        if !bad.is_empty() {
            for (cid, m) in &manifests {
                for (e, f) in m.files() {
                    for c in &f.chunks {
                        if bad.contains_key(&c.id) {
                            let a = Affected {
                                content_id: *cid,
                                path: e.path.to_string(),
                            };
                            let list = affects.entry(c.id).or_default();
                            if list.last() != Some(&a) {
                                list.push(a);
                            }
                        }
                    }
                }
            }
        }
        for (id, (fault, detail)) in bad {
            let affects = affects.remove(&id).unwrap_or_default();
            report.problems.push(Problem {
                object: ObjectKind::Chunk,
                id: id.to_hex(),
                fault,
                detail,
                affects,
            });
        }

        // The whole library: also manifests and chunks no recorded version uses (yet).
        if scope.is_none() {
            let named: HashSet<String> = manifests.iter().map(|(_, m)| m.id().to_hex()).collect();
            for (kind, object) in [(Kind::Manifest, ObjectKind::Manifest), (Kind::Chunk, ObjectKind::Chunk)] {
                for name in self.store.list(kind)? {
                    let Ok(id) = name.parse::<Digest>() else { continue };
                    if checked.contains(&id) || named.contains(&name) {
                        continue;
                    }
                    let detail = match self.store.get(kind, &name) {
                        Ok(None) => continue, // removed meanwhile (gc)
                        Ok(Some(stored)) => match check_object(&stored, &id, None) {
                            Ok(data) => {
                                if kind == Kind::Chunk {
                                    report.chunks_checked += 1;
                                    report.bytes_checked += data.len() as u64;
                                }
                                continue;
                            }
                            Err(why) => why,
                        },
                        Err(e) => format!("cannot be read: {e}"),
                    };
                    report.problems.push(Problem {
                        object,
                        id: name,
                        fault: Fault::Damaged,
                        detail,
                        affects: vec![],
                    });
                }
            }
        }
        Ok(report)
    }
}

fn whole_version(object: ObjectKind, id: String, e: &ContentError, c: ContentId) -> Problem {
    let fault = if matches!(e, ContentError::Missing { .. }) {
        Fault::Missing
    } else {
        Fault::Damaged
    };
    Problem {
        object,
        id,
        fault,
        detail: e.to_string(),
        affects: vec![Affected {
            content_id: c,
            path: String::new(),
        }],
    }
}
