//! How the CLI talks to people and to scripts: text on stdout, `--json` for machines, errors
//! on stderr with their whole cause chain.

use std::io::Write;

use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints a line of text on stdout, with control characters made visible (see [`clean`]).
pub fn line(text: impl std::fmt::Display) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{}", clean(&text.to_string()))?;
    Ok(())
}

/// Prints text on stdout (no newline added), control characters made visible, flushed.
pub fn text(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(clean(text).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Clears the terminal (the one escape sequence the CLI writes itself).
pub fn clear_screen() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"\x1b[H\x1b[2J")?;
    out.flush()?;
    Ok(())
}

/// Whether `e` is a write to stdout that failed because its reader closed the pipe.
pub fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

pub fn error(e: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "error: {}", clean(&e.to_string()));
    for cause in e.chain().skip(1) {
        let _ = write!(err, "\n  caused by: {}", clean(&cause.to_string()));
    }
    let _ = writeln!(err);
}

/// `s` with every control character but newline and tab, and every invisible formatting
/// character (bidirectional overrides and marks, zero-width characters, line and paragraph
/// separators), written as a visible escape (`\x1b`, `\u{202e}`): names and messages come
/// from the site, where anyone allowed to name a package could otherwise move the cursor,
/// recolour or rewrite what an administrator's terminal shows, or reverse text. A newline in
/// a name still starts a new line. `--json` output is left exact: it is data for programs,
/// which must treat it as such.
pub fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(
                c,
                '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
            )
    }
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !hidden(c) {
            out.push(c);
        } else if u32::from(c) < 0x80 {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Human-readable byte counts (binary units).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn control_characters_are_made_visible() {
        assert_eq!(clean("plain name\tand tab\n"), "plain name\tand tab\n");
        assert_eq!(clean("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(clean("a\rb\x07\x7f"), "a\\x0db\\x07\\x7f");
        assert_eq!(clean("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(clean("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
        assert_eq!(clean("a\u{200b}b\u{2028}c\u{feff}"), "a\\u{200b}b\\u{2028}c\\u{feff}");
        assert_eq!(clean("été 📦"), "été 📦");
    }
}
