//! `pkgdist dp prestage FILE`: imports a prestaged content file into a DP's library, offline
//! (the DP may be running or not), then tells the DP's site, which lets the DP's row go ahead
//! once it finds the content to be its own. The install that follows records the version
//! from what the import left, fetching nothing (see `pkgdist_content::prestage`).

use std::path::Path;

use pkgdist_content::Library;
use pkgdist_content::prestage::{self, Prestaged};
use pkgdist_proto::node::{PRESTAGED_PATH, PrestagedNotice};

use crate::DpError;
use crate::identity::Identity;

/// What the site said of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// The content is the site's own: the DP's row goes ahead.
    Taken,
    /// The site refused it (another site's content, a package not distributed to the DP):
    /// why, in its words. The import's hold is dropped.
    Refused(String),
}

/// Imports `file` into the library of the DP whose data folder is `data` (a DP that has
/// started once: its library exists).
pub fn import(data: &Path, file: &Path) -> Result<Prestaged, DpError> {
    let library = Library::open_local(&data.join("library"))?;
    let f = std::fs::File::open(file).map_err(|e| DpError::io(file, e))?;
    let mut input = std::io::BufReader::with_capacity(1 << 20, f);
    Ok(prestage::import(&library, &mut input)?)
}

/// Tells the DP's site what was imported; a refusal drops the import's hold. The import stands
/// if the site cannot be reached; telling it again is harmless.
pub async fn tell_site(data: &Path, imported: &Prestaged) -> Result<Told, DpError> {
    let id = Identity::load(data)?
        .filter(Identity::enrolled)
        .ok_or_else(|| DpError::Config(format!("{} holds no enrolled DP", data.display())))?;
    let resp = id
        .site_client(data)?
        .post(format!("{}{PRESTAGED_PATH}", id.site_url))
        .bearer_auth(&id.credential)
        .json(&PrestagedNotice {
            content: imported.content.to_string(),
            manifest_hash: imported.manifest_hash,
        })
        .send()
        .await
        .map_err(|e| DpError::Site(format!("cannot reach the site at {}: {e}", id.site_url)))?;
    if resp.status().is_success() {
        return Ok(Told::Taken);
    }
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let why = pkgdist_proto::ErrorBody::message_of(&text);
    if !status.is_client_error() {
        return Err(DpError::Site(format!(
            "the site could not take the notice (HTTP {}): {why}",
            status.as_u16()
        )));
    }
    let library = Library::open_local(&data.join("library"))?;
    library.release_prestaged(imported.content)?;
    Ok(Told::Refused(why))
}
