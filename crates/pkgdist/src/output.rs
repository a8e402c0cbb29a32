//! How the CLI talks to people and to scripts: text on stdout, `--json` for machines, errors
//! on stderr with their whole cause chain.

use std::io::Write;

use serde::Serialize;

/// Stdout's reader went away (`pkgdist package list | head -1`): what it wanted it has, so
/// the CLI ends quietly. Only writes to stdout fail with this, so a broken pipe anywhere else
/// (a connection to a site) is still reported.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed by its reader")]
pub struct StdoutClosed;

/// A failed write to stdout, as the CLI's error.
fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("writing to stdout")
    }
}

/// Writes `bytes` to stdout, flushed.
fn write_out(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).map_err(stdout_error)
}

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    write_out(&text)
}

/// Prints a line of text on stdout, with control characters made visible (see [`clean`]).
pub fn line(text: impl std::fmt::Display) -> anyhow::Result<()> {
    write_out(format!("{}\n", clean(&text.to_string())).as_bytes())
}

/// Prints text on stdout (no newline added), control characters made visible, flushed.
pub fn text(text: &str) -> anyhow::Result<()> {
    write_out(clean(text).as_bytes())
}

/// Clears the terminal (the one escape sequence the CLI writes itself).
pub fn clear_screen() -> anyhow::Result<()> {
    write_out(b"\x1b[H\x1b[2J")
}

/// Whether `e` is a write to stdout whose reader had closed the pipe ([`StdoutClosed`]).
pub fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<StdoutClosed>())
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

/// A table for people: a header line, then rows, each column as wide as its widest cell
/// (names are never cut), numbers aligned right. Cells are cleaned (see [`clean`]) before they
/// are measured, so an escaped character cannot misalign a column.
#[derive(Debug)]
pub struct Table {
    headers: Vec<(&'static str, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns by header; `true` aligns a column to the right (numbers).
    pub fn new(headers: &[(&'static str, bool)]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| clean(&c).into_owned()).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, a line per row, the last column not padded.
    pub fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([self.headers[i].0.len()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.headers.len()).map(width).collect();
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, (c, w)) in cells.zip(&widths).enumerate() {
                let last = i + 1 == widths.len();
                let pad = w.saturating_sub(c.chars().count());
                if i > 0 {
                    out.push_str("  ");
                }
                match (self.headers[i].1, last) {
                    (true, _) => {
                        out.push_str(&" ".repeat(pad));
                        out.push_str(c);
                    }
                    (false, true) => out.push_str(c),
                    (false, false) => {
                        out.push_str(c);
                        out.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
            out
        };
        let mut text = line(&mut self.headers.iter().map(|(h, _)| *h));
        for r in &self.rows {
            text.push_str(&line(&mut r.iter().map(String::as_str)));
        }
        text
    }

    /// Prints the table on stdout.
    pub fn print(&self) -> anyhow::Result<()> {
        write_out(self.render().as_bytes())
    }
}

#[cfg(test)]
mod table_tests {
    use super::Table;

    #[test]
    fn columns_fit_their_widest_cell_and_numbers_align_right() {
        let mut t = Table::new(&[("ID", false), ("SIZE", true), ("NAME", false)]);
        t.row(vec!["PS100001".into(), "5".into(), "A rather long package name".into()]);
        t.row(vec!["PS100002".into(), "12345".into(), "B".into()]);
        assert_eq!(
            t.render(),
            "ID         SIZE  NAME\nPS100001      5  A rather long package name\nPS100002  12345  B\n"
        );
    }

    #[test]
    fn escapes_are_measured_as_shown() {
        let mut t = Table::new(&[("NAME", false), ("N", true)]);
        t.row(vec!["a\u{1b}b".into(), "1".into()]);
        let text = t.render();
        assert!(text.contains("a\\x1bb  1"), "{text}");
    }
}

/// A bar of bytes with rate and time left, on stderr when it is a terminal (and `enabled`);
/// hidden otherwise, so scripts and logs get none of it.
pub fn progress_bar(enabled: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let target = if enabled && std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(None, target);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}
