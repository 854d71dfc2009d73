//! Where output goes and how it looks: the [`Io`] handles, JSON documents
//! (pretty, keys in the documented order) and tables that fit the terminal.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::error::CliError;

/// Output format of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// A writer shared by the command and its HTTP client (for `--verbose`).
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Box<dyn Write + Send>>>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared(..)")
    }
}

impl Shared {
    #[must_use]
    pub fn new(w: Box<dyn Write + Send>) -> Self {
        Self(Arc::new(Mutex::new(w)))
    }

    /// Writes `text` and flushes; a closed pipe is reported as I/O failure.
    pub fn write_str(&self, text: &str) -> Result<(), CliError> {
        let mut w = self
            .0
            .lock()
            .map_err(|_| CliError::Io("output lock poisoned".to_owned()))?;
        w.write_all(text.as_bytes())
            .and_then(|()| w.flush())
            .map_err(|e| CliError::Io(format!("writing output: {e}")))
    }
}

/// A buffer that tests (and embedders) can read after a run.
#[derive(Debug, Clone, Default)]
pub struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    /// Everything written so far, as text.
    #[must_use]
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process's view of its terminal, and where output goes.
#[derive(Debug, Clone)]
pub struct Io {
    pub out: Shared,
    pub err: Shared,
    /// stdout is a terminal: `--output auto` means table, colours allowed.
    pub out_is_terminal: bool,
    /// stderr is a terminal: progress bars are drawn.
    pub err_is_terminal: bool,
    /// Columns available to tables; `None` = unlimited.
    pub width: Option<usize>,
    /// `NO_COLOR` is set (to anything non-empty).
    pub no_color_env: bool,
}

impl Io {
    /// The real stdout and stderr.
    #[must_use]
    pub fn stdio() -> Self {
        use std::io::IsTerminal as _;
        let out_is_terminal = std::io::stdout().is_terminal();
        let width = if out_is_terminal {
            console::Term::stdout()
                .size_checked()
                .map(|(_, cols)| usize::from(cols))
        } else {
            std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok())
        };
        Self {
            out: Shared::new(Box::new(std::io::stdout())),
            err: Shared::new(Box::new(std::io::stderr())),
            out_is_terminal,
            err_is_terminal: std::io::stderr().is_terminal(),
            width,
            no_color_env: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }

    /// In-memory stdout and stderr (not terminals), for tests.
    #[must_use]
    pub fn capture(width: Option<usize>) -> (Self, Buffer, Buffer) {
        let (out, err) = (Buffer::default(), Buffer::default());
        let io = Self {
            out: Shared::new(Box::new(out.clone())),
            err: Shared::new(Box::new(err.clone())),
            out_is_terminal: false,
            err_is_terminal: false,
            width,
            no_color_env: false,
        };
        (io, out, err)
    }
}

/// Output settings of one run.
#[derive(Debug, Clone)]
pub struct Out {
    pub io: Io,
    pub format: Format,
    pub color: bool,
}

impl Out {
    /// Prints `value` as pretty JSON followed by a newline.
    pub fn json<T: Serialize>(&self, value: &T) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Io(format!("encoding JSON: {e}")))?;
        self.io.out.write_str(&format!("{text}\n"))
    }

    /// Prints `value` as one compact JSON line (streams: `tail`, `--follow`).
    pub fn json_line<T: Serialize>(&self, value: &T) -> Result<(), CliError> {
        let text = serde_json::to_string(value)
            .map_err(|e| CliError::Io(format!("encoding JSON: {e}")))?;
        self.io.out.write_str(&format!("{text}\n"))
    }

    /// Prints text to stdout.
    pub fn text(&self, text: &str) -> Result<(), CliError> {
        self.io.out.write_str(text)
    }

    /// A note for people on stderr (never part of the JSON contract).
    pub fn note(&self, text: &str) -> Result<(), CliError> {
        self.io.err.write_str(&format!("{text}\n"))
    }

    /// Wraps `text` in an ANSI colour when colours are on.
    #[must_use]
    pub fn paint(&self, text: &str, color: Color) -> String {
        if self.color {
            format!("\x1b[{}m{text}\x1b[0m", color as u8)
        } else {
            text.to_owned()
        }
    }
}

/// ANSI colours used in tables.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub enum Color {
    Red = 31,
    Green = 32,
    Yellow = 33,
    Blue = 34,
    Dim = 2,
}

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table column.
#[derive(Debug, Clone)]
pub struct Column {
    pub header: &'static str,
    pub align: Align,
    /// Lower priorities are dropped first when the terminal is narrow;
    /// [`KEEP`] and above never are.
    pub priority: u8,
    /// The column that shrinks (truncated with `…`) before any is dropped.
    pub flexible: bool,
}

impl Column {
    #[must_use]
    pub fn left(header: &'static str, priority: u8) -> Self {
        Self {
            header,
            align: Align::Left,
            priority,
            flexible: false,
        }
    }

    #[must_use]
    pub fn right(header: &'static str, priority: u8) -> Self {
        Self {
            align: Align::Right,
            ..Self::left(header, priority)
        }
    }

    #[must_use]
    pub fn flexible(mut self) -> Self {
        self.flexible = true;
        self
    }
}

/// One table cell: text and an optional colour applied after padding.
#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub color: Option<Color>,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self { text, color: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self::from(text.to_owned())
    }
}

impl Cell {
    #[must_use]
    pub fn colored(text: impl Into<String>, color: Option<Color>) -> Self {
        Self {
            text: text.into(),
            color,
        }
    }
}

const GAP: usize = 2;
/// The flexible column is cut to this before any column is dropped...
const COMFORT_FLEX: usize = 24;
/// ...and to this when nothing else can go.
const MIN_FLEX: usize = 8;

fn width_of(text: &str) -> usize {
    console::measure_text_width(text)
}

fn truncate(text: &str, width: usize) -> String {
    if width_of(text) <= width {
        return text.to_owned();
    }
    console::truncate_str(text, width, "…").into_owned()
}

/// Chooses the columns shown and the flexible column's width so that the
/// table fits `limit`: the flexible column gives way down to
/// [`COMFORT_FLEX`], then the lowest-priority columns go, then the
/// flexible column shrinks down to [`MIN_FLEX`].
fn fit(columns: &[Column], widths: &mut [usize], shown: &mut Vec<usize>, limit: usize) {
    let flex = shown.iter().copied().find(|&i| columns[i].flexible);
    loop {
        let fixed: usize = shown
            .iter()
            .filter(|&&i| Some(i) != flex)
            .map(|&i| widths[i])
            .sum::<usize>()
            + GAP * shown.len().saturating_sub(1);
        let available = limit.saturating_sub(fixed);
        let Some(f) = flex else {
            if fixed <= limit || !drop_lowest(columns, shown, None) {
                return;
            }
            continue;
        };
        let floor = width_of(columns[f].header).max(MIN_FLEX);
        let comfortable = widths[f].min(COMFORT_FLEX).max(floor);
        if available >= comfortable {
            widths[f] = widths[f].min(available);
            return;
        }
        if !drop_lowest(columns, shown, flex) {
            widths[f] = available.max(floor);
            return;
        }
    }
}

/// Columns of this priority or above are never dropped.
pub const KEEP: u8 = 10;

/// Drops the lowest-priority column other than `keep` and those marked
/// [`KEEP`]; false when none is left to drop.
fn drop_lowest(columns: &[Column], shown: &mut Vec<usize>, keep: Option<usize>) -> bool {
    if shown.len() <= 1 {
        return false;
    }
    let lowest = shown
        .iter()
        .enumerate()
        .filter(|&(_, &i)| Some(i) != keep && columns[i].priority < KEEP)
        .min_by_key(|&(_, &i)| columns[i].priority)
        .map(|(pos, _)| pos);
    match lowest {
        Some(pos) => {
            shown.remove(pos);
            true
        }
        None => false,
    }
}

/// Renders rows under `columns` so that the table fits `width`: the
/// flexible column shrinks first, then the lowest-priority columns go.
#[must_use]
pub fn render_table(out: &Out, columns: &[Column], rows: &[Vec<Cell>]) -> String {
    let mut natural: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|cell| width_of(&cell.text))
                .chain([width_of(c.header)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut shown: Vec<usize> = (0..columns.len()).collect();
    if let Some(limit) = out.io.width {
        fit(columns, &mut natural, &mut shown, limit);
    }
    let mut text = String::new();
    let header: Vec<Cell> = columns.iter().map(|c| Cell::from(c.header)).collect();
    for (n, row) in std::iter::once(&header).chain(rows.iter()).enumerate() {
        let mut line = String::new();
        for (k, &i) in shown.iter().enumerate() {
            let cell = row.get(i).cloned().unwrap_or_else(|| Cell::from(""));
            let w = natural[i];
            let body = truncate(&cell.text, w);
            let pad = " ".repeat(w.saturating_sub(width_of(&body)));
            let last = k + 1 == shown.len();
            let padded = match columns[i].align {
                Align::Left if last => body.clone(),
                Align::Left => format!("{body}{pad}"),
                Align::Right => format!("{pad}{body}"),
            };
            let painted = match (n, cell.color) {
                (0, _) => out.paint(&padded, Color::Dim),
                (_, Some(c)) => out.paint(&padded, c),
                (_, None) => padded,
            };
            line.push_str(&painted);
            if !last {
                line.push_str(&" ".repeat(GAP));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `key: value` lines, keys aligned.
#[must_use]
pub fn render_fields(out: &Out, fields: &[(&str, String)]) -> String {
    let w = fields.iter().map(|(k, _)| width_of(k)).max().unwrap_or(0);
    let mut text = String::new();
    for (k, v) in fields {
        let key = format!("{k}:{}", " ".repeat(w - width_of(k)));
        text.push_str(&out.paint(&key, Color::Dim));
        text.push(' ');
        text.push_str(v);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(width: Option<usize>, color: bool) -> Out {
        Out {
            io: Io::capture(width).0,
            format: Format::Table,
            color,
        }
    }

    fn rows() -> Vec<Vec<Cell>> {
        vec![
            vec![
                Cell::from("aaaa"),
                Cell::from("a fairly long torrent name"),
                Cell::colored("seeding", Some(Color::Green)),
                Cell::from("1.0 GiB"),
            ],
            vec![
                Cell::from("bbbb"),
                Cell::from("short"),
                Cell::from("paused"),
                Cell::from("12 B"),
            ],
        ]
    }

    fn columns() -> Vec<Column> {
        vec![
            Column::left("ID", 9),
            Column::left("NAME", 8).flexible(),
            Column::left("STATE", 7),
            Column::right("SIZE", 3),
        ]
    }

    #[test]
    fn tables_fit_the_width_by_shrinking_then_dropping() {
        let wide = render_table(&out(None, false), &columns(), &rows());
        assert_eq!(
            wide,
            "ID    NAME                        STATE       SIZE\n\
             aaaa  a fairly long torrent name  seeding  1.0 GiB\n\
             bbbb  short                       paused      12 B\n"
        );
        let narrow = render_table(&out(Some(40), false), &columns(), &rows());
        assert!(narrow.lines().all(|l| width_of(l) <= 40), "{narrow}");
        assert!(narrow.contains('…'));
        let tiny = render_table(&out(Some(20), false), &columns(), &rows());
        assert!(!tiny.contains("SIZE"), "{tiny}");
        let colored = render_table(&out(None, true), &columns(), &rows());
        assert!(colored.contains("\x1b[32mseeding\x1b[0m"));
    }

    #[test]
    fn fields_align_keys() {
        let text = render_fields(
            &out(None, false),
            &[("id", "x".to_owned()), ("state", "y".to_owned())],
        );
        assert_eq!(text, "id:    x\nstate: y\n");
    }
}
