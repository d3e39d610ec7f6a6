//! How a binary reports a config file it cannot use: the same three cases for `agent.json`
//! and `gateway.toml`, every message naming the file.

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not parse, or holds a key the reader does not take.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message (`unknown field `x`, expected one of ...`).
        message: String,
    },
    /// The file parses but its values do not work together.
    #[error("{path}: {}", problems.join("\n  "))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem found, each saying how to fix it.
        problems: Vec<String>,
    },
}

/// 1-based line and column (in characters) of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = (0..=offset.min(text.len()))
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
