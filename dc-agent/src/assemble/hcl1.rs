//! HCL1, the HCL Consul itself reads (hashicorp/hcl v1), for the configs HCL2 (hcl-rs)
//! refuses: items separated by commas or sharing a line (`ports { http = 8500, dns = 8600 }`,
//! `ports { http = 8500 dns = 8600 }`), quoted keys (`"datacenter" = "dc1"`), `=` before a
//! block, identifiers with dots. A config is read with hcl-rs first; this parser takes over
//! only when hcl-rs refuses it, and gives the same JSON shapes: a block is an object, a key
//! given several blocks a list of them, `a "b" { }` the object `{"a": {"b": {}}}`.
//!
//! Strings keep `${...}` as written (Consul does not interpolate configs). Pure: text in,
//! value or `(line, column, message)` out.

use serde_json::{Map, Number, Value};

/// A syntax error: line and column (from 1) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hcl1Error {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses HCL1 text into the JSON value Consul would decode.
pub fn parse(text: &str) -> Result<Value, Hcl1Error> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        at: 0,
        open_comment: None,
    };
    let object = parser.object_list(None);
    if let Some(at) = parser.open_comment {
        parser.at = at;
        return Err(parser.error("comment not terminated"));
    }
    let object = object?;
    parser.skip_space();
    if parser.at < parser.chars.len() {
        return Err(parser.error("expected a key"));
    }
    Ok(Value::Object(object))
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    /// Where a `/*` without its `*/` opened.
    open_comment: Option<usize>,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.at + offset).copied()
    }

    fn error(&self, message: &str) -> Hcl1Error {
        let before = &self.chars[..self.at.min(self.chars.len())];
        let line = before.iter().filter(|c| **c == '\n').count() + 1;
        let column = before.iter().rev().take_while(|c| **c != '\n').count() + 1;
        Hcl1Error {
            line,
            column,
            message: message.to_owned(),
        }
    }

    /// Skips white space (new lines included) and comments.
    fn skip_space(&mut self) {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(c), _) if c.is_whitespace() => self.at += 1,
                (Some('#'), _) | (Some('/'), Some('/')) => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.at += 1;
                    }
                }
                (Some('/'), Some('*')) => {
                    let opened = self.at;
                    self.at += 2;
                    while self.at < self.chars.len()
                        && !(self.peek() == Some('*') && self.peek_at(1) == Some('/'))
                    {
                        self.at += 1;
                    }
                    if self.at >= self.chars.len() {
                        self.open_comment.get_or_insert(opened);
                    }
                    self.at = (self.at + 2).min(self.chars.len());
                }
                _ => return,
            }
        }
    }

    /// Items up to `end` (`}`), or to the end of the text at the top.
    fn object_list(&mut self, end: Option<char>) -> Result<Map<String, Value>, Hcl1Error> {
        let mut object = Map::new();
        loop {
            self.skip_space();
            match (self.peek(), end) {
                (None, None) => return Ok(object),
                (None, Some(_)) => return Err(self.error("expected `}`")),
                (Some(c), Some(end)) if c == end => {
                    self.at += 1;
                    return Ok(object);
                }
                (Some(','), _) => {
                    self.at += 1;
                    continue;
                }
                _ => {}
            }
            let mut keys = vec![self.key()?];
            let value = loop {
                self.skip_space();
                match self.peek() {
                    Some('=') => {
                        self.at += 1;
                        self.skip_space();
                        break self.value()?;
                    }
                    Some('{') => {
                        self.at += 1;
                        break Value::Object(self.object_list(Some('}'))?);
                    }
                    Some(c) if c == '"' || is_ident_start(c) => keys.push(self.key()?),
                    _ => return Err(self.error("expected `=` or `{` after the key")),
                }
            };
            // `a "b" "c" { }` is `a = { b = { c = { } } }`.
            let mut value = value;
            for key in keys.drain(1..).rev() {
                let mut inner = Map::new();
                inner.insert(key, value);
                value = Value::Object(inner);
            }
            insert(&mut object, keys.remove(0), value);
        }
    }

    fn key(&mut self) -> Result<String, Hcl1Error> {
        match self.peek() {
            Some('"') => self.string(),
            Some(c) if is_ident_start(c) => {
                let start = self.at;
                while self.peek().is_some_and(is_ident_char) {
                    self.at += 1;
                }
                Ok(self.chars[start..self.at].iter().collect())
            }
            _ => Err(self.error("expected a key")),
        }
    }

    fn value(&mut self) -> Result<Value, Hcl1Error> {
        match self.peek() {
            Some('"') => self.string().map(Value::String),
            Some('{') => {
                self.at += 1;
                self.object_list(Some('}')).map(Value::Object)
            }
            Some('[') => {
                self.at += 1;
                self.list()
            }
            Some('<') if self.peek_at(1) == Some('<') => self.heredoc().map(Value::String),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) if is_ident_start(c) => {
                let word = self.key()?;
                match word.as_str() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    _ => Err(self.error(&format!(
                        "unknown value {word:?}: quote strings (\"{word}\")"
                    ))),
                }
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn list(&mut self) -> Result<Value, Hcl1Error> {
        let mut items = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                Some(']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                None => return Err(self.error("expected `]`")),
                _ => {}
            }
            items.push(self.value()?);
            self.skip_space();
            match self.peek() {
                Some(',') => self.at += 1,
                Some(']') => {}
                _ => return Err(self.error("expected `,` or `]` in the list")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, Hcl1Error> {
        let start = self.at;
        if self.peek() == Some('-') {
            self.at += 1;
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '+' || c == '-')
        {
            // A sign belongs to an exponent only.
            if matches!(self.peek(), Some('+' | '-'))
                && !matches!(self.chars.get(self.at - 1), Some('e' | 'E'))
            {
                break;
            }
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        let parsed = if let Some(hex) = text.strip_prefix("0x") {
            i64::from_str_radix(hex, 16).ok().map(Number::from)
        } else if let Ok(int) = text.parse::<i64>() {
            Some(Number::from(int))
        } else {
            text.parse::<f64>().ok().and_then(Number::from_f64)
        };
        match parsed {
            Some(number) => Ok(Value::Number(number)),
            None => {
                self.at = start;
                Err(self.error(&format!("{text:?} is not a number")))
            }
        }
    }

    fn string(&mut self) -> Result<String, Hcl1Error> {
        let start = self.at;
        self.at += 1;
        let mut out = String::new();
        let mut braces = 0usize;
        loop {
            let Some(c) = self.peek() else {
                self.at = start;
                return Err(self.error("unterminated string"));
            };
            self.at += 1;
            match c {
                '"' if braces == 0 => return Ok(out),
                '\n' if braces == 0 => {
                    self.at = start;
                    return Err(self.error("unterminated string"));
                }
                '\\' => {
                    let Some(escaped) = self.peek() else { continue };
                    self.at += 1;
                    match escaped {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        'u' | 'U' => {
                            let width = if escaped == 'u' { 4 } else { 8 };
                            let hex: String = self.chars
                                [self.at..(self.at + width).min(self.chars.len())]
                                .iter()
                                .collect();
                            let decoded = u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == width)
                                .and_then(char::from_u32);
                            match decoded {
                                Some(decoded) => {
                                    out.push(decoded);
                                    self.at += width;
                                }
                                None => return Err(self.error("bad unicode escape")),
                            }
                        }
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                // `${ ... }` is kept as written, quotes inside it included.
                '$' if self.peek() == Some('{') => {
                    out.push('$');
                    out.push('{');
                    self.at += 1;
                    braces += 1;
                }
                '}' if braces > 0 => {
                    out.push('}');
                    braces -= 1;
                }
                other => out.push(other),
            }
        }
    }

    /// `<<EOF` ... `EOF`, or `<<-EOF` with the closing line's indent removed from each line.
    fn heredoc(&mut self) -> Result<String, Hcl1Error> {
        let start = self.at;
        self.at += 2;
        let indented = self.peek() == Some('-');
        if indented {
            self.at += 1;
        }
        let marker_start = self.at;
        while self.peek().is_some_and(is_ident_char) {
            self.at += 1;
        }
        let marker: String = self.chars[marker_start..self.at].iter().collect();
        if marker.is_empty() || self.peek() != Some('\n') {
            self.at = start;
            return Err(self.error("a heredoc needs a marker and a new line (`<<EOF`)"));
        }
        self.at += 1;
        let mut lines = Vec::new();
        loop {
            if self.at >= self.chars.len() {
                self.at = start;
                return Err(self.error(&format!("the heredoc has no closing {marker}")));
            }
            let line_start = self.at;
            while self.peek().is_some_and(|c| c != '\n') {
                self.at += 1;
            }
            let line: String = self.chars[line_start..self.at].iter().collect();
            if self.peek() == Some('\n') {
                self.at += 1;
            }
            if line.trim() == marker {
                // Only ASCII blanks are indentation: slicing stays on character boundaries.
                let blanks = |l: &str| l.len() - l.trim_start_matches([' ', '\t']).len();
                let indent = blanks(&line);
                let body: Vec<&str> = lines
                    .iter()
                    .map(|l: &String| {
                        if indented {
                            &l[blanks(l).min(indent)..]
                        } else {
                            l.as_str()
                        }
                    })
                    .collect();
                let mut text = body.join("\n");
                text.push('\n');
                return Ok(text);
            }
            lines.push(line);
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

/// Adds `key = value`; a key given again collects its values in a list, as hcl-rs does
/// for repeated blocks.
fn insert(object: &mut Map<String, Value>, key: String, value: Value) {
    match object.get_mut(&key) {
        None => {
            object.insert(key, value);
        }
        Some(Value::Array(items)) if value.is_object() && items.iter().all(Value::is_object) => {
            items.push(value)
        }
        Some(existing) if existing.is_object() && value.is_object() => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        // A plain attribute given twice: the last one counts.
        Some(existing) => *existing = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_hcl2_refuses_and_consul_takes() {
        let text = r#"
# Consul's HCL1
"datacenter" = "dc1"
ports { http = 8500, dns = 8600 }
addresses { http = "0.0.0.0" grpc = "127.0.0.1" }
node_meta = {
  "instance-type" = "t2.medium",
}
service {
  name = "web"
  tags = ["a", "b",]
  port = 80
  check = {
    http = "http://localhost:80/health?x=${node}"
    interval = "10s"
  }
}
service { name = "api", port = 81 }
/* a block comment */
retry_join = ["10.0.0.1", "10.0.0.2"]  // trailing
raft_snapshot_threshold = 16384
dns_config { node_ttl = "10s", allow_stale = true, a_record_limit = 0x10 }
ratio = -1.5e2
"#;
        let parsed = parse(text).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            parsed,
            json!({
                "datacenter": "dc1",
                "ports": {"http": 8500, "dns": 8600},
                "addresses": {"http": "0.0.0.0", "grpc": "127.0.0.1"},
                "node_meta": {"instance-type": "t2.medium"},
                "service": [
                    {"name": "web", "tags": ["a", "b"], "port": 80,
                     "check": {"http": "http://localhost:80/health?x=${node}", "interval": "10s"}},
                    {"name": "api", "port": 81},
                ],
                "retry_join": ["10.0.0.1", "10.0.0.2"],
                "raft_snapshot_threshold": 16384,
                "dns_config": {"node_ttl": "10s", "allow_stale": true, "a_record_limit": 16},
                "ratio": -150.0,
            })
        );
    }

    #[test]
    fn labels_heredocs_and_escapes() {
        let text = "service \"web\" { port = 80 }\nscript = <<-EOT\n    echo \"hi\"\n      done\n    EOT\nq = \"a\\\"b\\u00e9\"\n";
        let parsed = parse(text).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            parsed,
            json!({
                "service": {"web": {"port": 80}},
                "script": "echo \"hi\"\n  done\n",
                "q": "a\"b\u{e9}",
            })
        );
    }

    #[test]
    fn odd_input_is_an_error_or_a_value_never_a_panic() {
        for text in [
            "s = <<-EOT\n\u{3000}x\n EOT\n",
            "s = <<-EOT\n x\n\u{3000}EOT\n",
            "a = -",
            "a = /* open",
            "/* open",
            "a = [",
            "a = \"\\u12\"",
            "a { b = { c = [1, {d = 2}] } }",
            "\"",
            "a = 1e999",
            "= 1",
        ] {
            let _ = parse(text);
        }
    }

    #[test]
    fn errors_name_line_and_column() {
        let error = parse("a = 1\nb = \n").err();
        assert_eq!(error.map(|e| (e.line, e.column)), Some((3, 1)));
        let error = parse("a = [1, 2\n").err();
        assert!(error.is_some_and(|e| e.message.contains("`]`")));
        let error = parse("ports {\n  http = 8500\n").err();
        assert!(error.is_some_and(|e| e.message.contains("`}`")));
        let error = parse("a = yes\n").err();
        assert_eq!(error.map(|e| (e.line, e.column)), Some((1, 8)));
        let error = parse("a = 1\n/* b = 2\n").err();
        assert!(error.is_some_and(|e| e.message.contains("comment not terminated") && e.line == 2));
        let error = parse("s = \"open\n").err();
        assert_eq!(error.map(|e| (e.line, e.column)), Some((1, 5)));
    }
}
