//! One module per command group.

pub mod admin;
pub mod background;
pub mod content;
pub mod node;
pub mod schedule;
pub mod site;
pub mod status;

/// The enrollment token read from a file (trimmed), or else the one given on the command line
/// or in the environment; `None` when neither is given.
pub fn enrollment_token(given: Option<String>, file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    use anyhow::Context as _;
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the enrollment token file {}", path.display()))?;
            let token = text.trim();
            anyhow::ensure!(
                !token.is_empty(),
                "the enrollment token file {} is empty",
                path.display()
            );
            Ok(Some(token.to_owned()))
        }
        None => Ok(given),
    }
}
