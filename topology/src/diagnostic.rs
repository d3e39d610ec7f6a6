//! Errors and warnings about a topology file, pointing at file, line and column.

use std::fmt::Write as _;
use std::ops::Range;

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// The file works but probably not as meant.
    Warning,
}

/// One finding: what, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Byte range in the file, when the finding has a place.
    pub span: Option<Range<usize>>,
    /// What is wrong, lowercase, no final period.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
    /// A second place that matters (the first definition of a duplicate).
    pub related: Option<(Range<usize>, String)>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
            help: None,
            related: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
            help: None,
            related: None,
        }
    }

    /// Adds how to fix it.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds a second place, such as the first definition of a duplicate.
    pub fn with_related(mut self, span: Range<usize>, note: impl Into<String>) -> Diagnostic {
        self.related = Some((span, note.into()));
        self
    }

    /// Renders like a compiler message:
    ///
    /// ```text
    /// error: duplicate node name `s1` in dc1
    ///   --> two-dcs.toml:12:10
    ///    |
    /// 12 | name = "s1"
    ///    |        ^^^^
    ///    = help: node names must be unique within a datacenter
    /// ```
    pub fn render(&self, path: &str, source: &str) -> String {
        let mut out = String::new();
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{label}: {}", self.message);
        let lines = self
            .span
            .iter()
            .chain(self.related.iter().map(|(span, _)| span));
        let gutter = lines
            .map(|span| line_col(source, span.start).0.to_string().len())
            .max()
            .unwrap_or(1);
        match &self.span {
            Some(span) => render_snippet(&mut out, path, source, span, None, gutter),
            None => {
                let _ = writeln!(out, "{:gutter$}--> {path}", "");
            }
        }
        if let Some((span, note)) = &self.related {
            render_snippet(&mut out, path, source, span, Some(note), gutter);
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{:gutter$} = help: {help}", "");
        }
        out
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    wire::config_file::line_col(source, offset)
}

fn render_snippet(
    out: &mut String,
    path: &str,
    source: &str,
    span: &Range<usize>,
    note: Option<&str>,
    gutter: usize,
) {
    let (line, column) = line_col(source, span.start);
    let _ = writeln!(out, "{:gutter$}--> {path}:{line}:{column}", "");
    let Some(text) = source.lines().nth(line - 1) else {
        return;
    };
    let line_chars = text.chars().count();
    let span_chars = source
        .get(span.clone())
        .map_or(1, |s| s.lines().next().map_or(1, |l| l.chars().count()));
    let width = span_chars.clamp(1, line_chars.saturating_sub(column - 1).max(1));
    let _ = writeln!(out, "{:gutter$} |", "");
    let _ = writeln!(out, "{line:>gutter$} | {text}");
    let marker = format!("{}{}", " ".repeat(column - 1), "^".repeat(width));
    match note {
        Some(note) => {
            let _ = writeln!(out, "{:gutter$} | {marker} {note}", "");
        }
        None => {
            let _ = writeln!(out, "{:gutter$} | {marker}", "");
        }
    }
}

/// The nearest of `candidates` to `word`, if near enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len().max(word.len()) / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_near_keys() {
        let keys = [
            "servers",
            "clients",
            "gateways",
            "services",
            "name",
            "overrides",
        ];
        assert_eq!(nearest("sevrers", &keys), Some("servers"));
        assert_eq!(nearest("gateway", &keys), Some("gateways"));
        assert_eq!(nearest("zookeeper", &keys), None);
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
    }
}
