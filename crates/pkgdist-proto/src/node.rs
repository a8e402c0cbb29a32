//! The node protocol: what a site and its distribution points say to each other.
//!
//! Content moves by pull (DESIGN.md §4). The site hands a DP a [`Job`]; the DP fetches the
//! manifest from a source, checks it against the hash in the job, asks the source for the
//! chunks it lacks in batches ([`ChunkRequest`] → a body of [`frames`]), verifies each chunk,
//! commits the version and keeps a [`JobStatus`] the site polls. Every node that holds content
//! serves the same two source routes, so a site, a DP (for `pkgdist fetch`) and later a pull
//! DP's source all look alike to the fetcher.
//!
//! Authentication, both ways:
//! - DP → site: `Authorization: Bearer <credential>`. The DP makes the credential itself and
//!   hands it over once, with its one-time enrollment token ([`EnrollRequest`]); the site keeps
//!   only its hash. Retrying an enrollment with the same token and credential is harmless, so a
//!   DP that crashed before saving the answer can try again.
//! - site → DP: `Authorization: Bearer <site token>`, a secret the site derives for this DP
//!   from its own key and returns in [`EnrollResponse`]; the DP keeps only its hash.

use pkgdist_core::Digest;
use serde::{Deserialize, Serialize};

/// DP → site: trade a one-time enrollment token for a standing credential.
pub const ENROLL_PATH: &str = "/node/v1/enroll";
/// DP → site, on every start: where the DP can be reached now.
pub const HELLO_PATH: &str = "/node/v1/hello";
/// The site's CA certificate (PEM), for anyone: a new node checks it against the pin its
/// enrollment token carries before trusting it.
pub const CA_PATH: &str = "/node/v1/ca";
/// site → DP: `POST` a job, `GET …/{id}` its status, `DELETE …/{id}` cancels it.
pub const JOBS_PATH: &str = "/node/v1/jobs";
/// Any content node: `GET …/{ContentID}` is the manifest of a version (canonical bytes).
pub const MANIFESTS_PATH: &str = "/node/v1/manifests";
/// Any content node: `GET …/{PackageID}` is the manifest of the latest version it holds.
pub const LATEST_PATH: &str = "/node/v1/latest";
/// Any content node: `POST` a [`ChunkRequest`], get the chunks back as [`frames`].
pub const CHUNKS_PATH: &str = "/node/v1/chunks";

/// Request header of chunk requests made for a job: the job's ID (`<PackageID>-…`), so the
/// source can apply the receiver's availability schedule to the job's package priority. A
/// source closed to it answers 503 with `Retry-After`, and the receiver waits and asks again.
pub const JOB_HEADER: &str = "x-pkgdist-job";

/// Request header of chunk requests: the receiver takes the frames in groups, each compressed
/// when that pays (`zstd-groups`, see `pkgdist_node::groups`). Without it frames come as
/// they are, as to nodes from before.
pub const FRAMES_ACCEPT_HEADER: &str = "x-pkgdist-frames-accept";

/// Response header of chunk requests: `zstd-groups` when the body is in groups.
pub const FRAMES_ENCODING_HEADER: &str = "x-pkgdist-frames-encoding";

/// The one grouped encoding.
pub const ZSTD_GROUPS: &str = "zstd-groups";

/// Response header of the manifest routes: the content ID served.
pub const CONTENT_ID_HEADER: &str = "x-pkgdist-content-id";

/// Request header of the manifest routes: the encodings the receiver takes (`zstd`). Without
/// it a manifest is sent as its canonical bytes, as to nodes from before manifests were
/// compressed.
pub const MANIFEST_ACCEPT_HEADER: &str = "x-pkgdist-manifest-accept";

/// Response header of the manifest routes: how the body is encoded, `zstd`, or
/// `zstd; base=<ContentID>` when compressed against the manifest of that version (which the
/// receiver named in the `base` query parameter, and holds). Absent: canonical bytes.
pub const MANIFEST_ENCODING_HEADER: &str = "x-pkgdist-manifest-encoding";

/// The most chunks one [`ChunkRequest`] may name.
pub const MAX_CHUNKS_PER_REQUEST: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time token `pkgdist dp add` printed.
    pub enrollment_token: String,
    /// The credential the DP will present from now on (made by the DP, random).
    pub credential: String,
    /// Where the site reaches the DP, e.g. `https://10.0.0.5:8471`.
    pub url: String,
    /// A certificate request (PEM) for the key the DP made, when it enrolls over TLS: the
    /// site answers with a certificate for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub name: String,
    pub nal_path: String,
    pub site_code: String,
    /// What the site will present to the DP.
    pub site_token: String,
    /// The DP's certificate (PEM chain, leaf first), when it sent a request for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

/// A DP tells its site it imported a version from a prestaged file (`pkgdist dp prestage`).
pub const PRESTAGED_PATH: &str = "/node/v1/prestaged";

/// What a DP imported from a prestaged file: the site checks the manifest hash is its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrestagedNotice {
    /// A content ID, e.g. `PS100001.3`.
    pub content: String,
    pub manifest_hash: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloRequest {
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Bring the DP to a content version (fetching only what it lacks).
    Install,
    /// Release every version of the job's package on the DP.
    Remove,
    /// Re-hash the installed version and report damaged files.
    Validate,
}

/// One unit of work for a DP. Jobs are idempotent: the same `id` posted again returns the
/// job's status (or restarts it when it had failed), never a second transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Unique per DP; the site uses `<PackageID>-<sequence>`.
    pub id: String,
    pub kind: JobKind,
    /// A content ID (`PS100001.3`) for install and validate; for remove, any version of the
    /// package (all of its versions go).
    pub content: String,
    /// Install and validate: the hash the manifest must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_hash: Option<Digest>,
    /// Base URLs to fetch from, in order of preference.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Install: re-hash every chunk already held and fetch again what is damaged (what
    /// `ReDistributePackage` asks for). Validate: repair what the validation finds damaged,
    /// from the sources, then verify again (the DP's `RepairDamagedContent` setting).
    #[serde(default)]
    pub repair: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Running)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub job: Job,
    pub state: JobState,
    /// Chunk bytes received from sources for this job, as sent (compressed chunks count
    /// compressed), over every attempt and restart.
    pub bytes_received: u64,
    pub chunks_received: u64,
    /// Distinct chunks the version has, and how many were already present when planning.
    pub chunks_total: u64,
    pub chunks_present: u64,
    /// What happened, for the site's status message.
    pub message: String,
    /// Validate: files found damaged or missing.
    #[serde(default)]
    pub damaged: Vec<String>,
    /// Validate with `repair`: the damage found was repaired from the sources, and the version
    /// verified whole afterwards.
    #[serde(default)]
    pub repaired: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    pub ids: Vec<Digest>,
    /// Empty, or one list per id: chunks the receiver holds that resemble it (the same place
    /// in the previous version of the file). The source may then send a delta against them
    /// ([`frames::DELTA`]). Sources that do not know this field ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<Vec<Digest>>,
}

/// The most bases one chunk of a [`ChunkRequest`] may name.
pub const MAX_BASES_PER_CHUNK: usize = 4;

/// The body answering a [`ChunkRequest`]: one frame per requested chunk, in request order.
///
/// ```text
/// frame := id (32 bytes) · length (u32, big-endian) · envelope (length bytes)
/// ```
///
/// A length of [`frames::ABSENT`] (and no bytes) says the source does not hold that chunk. A
/// length with the [`frames::DELTA`] bit set carries, instead of the envelope, the chunk's
/// bytes zstd-compressed with the request's bases for that chunk, concatenated, as prefix.
pub mod frames {
    use pkgdist_core::Digest;

    pub const ABSENT: u32 = u32::MAX;
    /// Set in a frame's length: the payload is a delta against the request's bases.
    pub const DELTA: u32 = 1 << 31;
    const HEADER: usize = 36;

    /// What a frame carries.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Payload<'a> {
        /// The source does not hold the chunk.
        Absent,
        /// The chunk's envelope, as stored.
        Stored(&'a [u8]),
        /// The chunk compressed against its bases.
        Delta(&'a [u8]),
    }

    /// Appends one frame. Payloads are far below 2 GiB (chunks are at most 16 MiB).
    pub fn push(out: &mut Vec<u8>, id: &Digest, payload: Payload<'_>) {
        out.extend_from_slice(id.as_bytes());
        let (flag, bytes) = match payload {
            Payload::Absent => {
                out.extend_from_slice(&ABSENT.to_be_bytes());
                return;
            }
            Payload::Stored(b) => (0, b),
            Payload::Delta(b) => (DELTA, b),
        };
        let len = u32::try_from(bytes.len()).unwrap_or(DELTA - 1).min(DELTA - 1);
        out.extend_from_slice(&(len | flag).to_be_bytes());
        out.extend_from_slice(&bytes[..len as usize]);
    }

    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    #[error("malformed chunk frames at byte {at}: {why}")]
    pub struct FrameError {
        pub at: usize,
        pub why: &'static str,
    }

    /// One frame: a chunk id and what came for it.
    pub type Frame<'a> = (Digest, Payload<'a>);

    /// Splits a body into frames. Strict: a truncated frame or trailing bytes are an error.
    pub fn parse(mut body: &[u8]) -> Result<Vec<Frame<'_>>, FrameError> {
        let mut out = Vec::new();
        let mut at = 0;
        while !body.is_empty() {
            if body.len() < HEADER {
                return Err(FrameError {
                    at,
                    why: "truncated frame header",
                });
            }
            let mut id = [0u8; 32];
            id.copy_from_slice(&body[..32]);
            let mut len = [0u8; 4];
            len.copy_from_slice(&body[32..HEADER]);
            let len = u32::from_be_bytes(len);
            body = &body[HEADER..];
            at += HEADER;
            if len == ABSENT {
                out.push((Digest(id), Payload::Absent));
                continue;
            }
            let delta = len & DELTA != 0;
            let len = (len & !DELTA) as usize;
            if body.len() < len {
                return Err(FrameError {
                    at,
                    why: "truncated chunk",
                });
            }
            let bytes = &body[..len];
            out.push((
                Digest(id),
                if delta {
                    Payload::Delta(bytes)
                } else {
                    Payload::Stored(bytes)
                },
            ));
            body = &body[len..];
            at += len;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_truncation() {
        use frames::Payload::{Absent, Delta, Stored};
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let mut body: Vec<u8> = Vec::new();
        frames::push(&mut body, &a, Stored(b"envelope-a"));
        frames::push(&mut body, &b, Absent);
        frames::push(&mut body, &a, Stored(b""));
        frames::push(&mut body, &b, Delta(b"dd"));
        let parsed = frames::parse(&body).unwrap();
        assert_eq!(
            parsed,
            vec![
                (a, Stored(&b"envelope-a"[..])),
                (b, Absent),
                (a, Stored(&b""[..])),
                (b, Delta(&b"dd"[..]))
            ]
        );
        for cut in 1..body.len() {
            let r = frames::parse(&body[..cut]);
            // Cuts on a frame boundary parse (fewer frames); every other cut is an error.
            let boundaries = [46, 82, 118, 156];
            assert_eq!(r.is_ok(), boundaries.contains(&cut), "cut at {cut}");
        }
    }

    #[test]
    fn chunk_requests_without_bases_keep_their_old_form() {
        let plain = ChunkRequest {
            ids: vec![Digest::of(b"x")],
            bases: vec![],
        };
        let v = serde_json::to_value(&plain).unwrap();
        assert!(v.get("bases").is_none(), "{v}");
        assert_eq!(serde_json::from_value::<ChunkRequest>(v).unwrap(), plain);
    }

    #[test]
    fn job_json_is_stable() {
        let j = Job {
            id: "PS100001-3".into(),
            kind: JobKind::Install,
            content: "PS100001.2".into(),
            manifest_hash: Some(Digest::of(b"m")),
            sources: vec!["http://127.0.0.1:1".into()],
            repair: false,
        };
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["kind"], "install");
        assert_eq!(serde_json::from_value::<Job>(v).unwrap(), j);
    }
}
