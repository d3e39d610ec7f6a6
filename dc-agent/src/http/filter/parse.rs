//! The expression parser: bexpr's grammar as a scannerless PEG parser.

use super::*;

/// Which operator a match expression uses before its value is attached.
#[derive(Clone, Copy)]
enum Kind {
    Equal,
    In,
    Matches,
}

/// A scannerless PEG parser following bexpr's grammar, with pigeon-style error reporting: the
/// farthest position where nothing matched and what was expected there, unless a rule raised
/// its own error (unterminated string, unmatched parenthesis, ...), which always wins.
pub(super) struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    fail_pos: usize,
    expected: Vec<String>,
    error: Option<String>,
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            depth: 0,
            fail_pos: 0,
            expected: Vec::new(),
            error: None,
        }
    }

    pub(super) fn parse(mut self) -> Result<Expr, String> {
        self.ws();
        let expr = self.or_expr();
        let complete = expr.is_some() && {
            self.ws();
            self.eof()
        };
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        match expr {
            Some(expr) if complete => Ok(expr),
            _ => Err(self.no_match()),
        }
    }

    // ---- error reporting ----

    fn position(&self, at: usize) -> String {
        let before = self.src.get(..at).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{line}:{column} ({at})")
    }

    fn fail(&mut self, at: usize, want: &str) {
        if at > self.fail_pos {
            self.fail_pos = at;
            self.expected.clear();
        }
        if at == self.fail_pos && !self.expected.iter().any(|e| e == want) {
            self.expected.push(want.to_owned());
        }
    }

    fn custom(&mut self, at: usize, rule: &str, message: &str) {
        if self.error.is_none() {
            self.error = Some(format!("{}: rule {rule}: {message}", self.position(at)));
        }
    }

    fn no_match(&self) -> String {
        let mut expected = self.expected.clone();
        expected.sort();
        let list = match expected.split_last() {
            None => String::new(),
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        };
        format!(
            "{}: no match found, expected: {list}",
            self.position(self.fail_pos)
        )
    }

    // ---- terminals ----

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.src.get(from..to).unwrap_or("")
    }

    fn lit(&mut self, text: &str) -> bool {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        if rest.starts_with(text.as_bytes()) {
            self.pos += text.len();
            true
        } else {
            self.fail(self.pos, &format!("{text:?}"));
            false
        }
    }

    /// `_`: one or more of `[ \t\r\n]`.
    fn ws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
        if self.pos == start {
            self.fail(start, "whitespace");
            false
        } else {
            true
        }
    }

    fn eof(&mut self) -> bool {
        if self.pos >= self.bytes.len() {
            true
        } else {
            self.fail(self.pos, "EOF");
            false
        }
    }

    /// `_ w1 _ w2 ... _` (the last `_` only if `trailing`); restores the position on failure.
    fn words(&mut self, words: &[&str], trailing: bool) -> bool {
        let start = self.pos;
        let ok = words.iter().all(|w| self.ws() && self.lit(w)) && (!trailing || self.ws());
        if !ok {
            self.pos = start;
        }
        ok
    }

    fn enter(&mut self) -> bool {
        if self.depth >= MAX_NESTING {
            let message = format!("the expression nests deeper than {MAX_NESTING} levels");
            self.custom(self.pos, "nesting", &message);
            return false;
        }
        self.depth += 1;
        true
    }

    // ---- expressions ----

    /// `Term (_ keyword _ Term)*`, one term alone or all of them joined by `join`.
    fn joined(
        &mut self,
        keyword: &str,
        term: fn(&mut Self) -> Option<Expr>,
        join: fn(Vec<Expr>) -> Expr,
    ) -> Option<Expr> {
        let mut terms = vec![term(self)?];
        loop {
            let save = self.pos;
            if self.ws() && self.lit(keyword) && self.ws() {
                if let Some(next) = term(self) {
                    terms.push(next);
                    continue;
                }
            }
            self.pos = save;
            break;
        }
        Some(if terms.len() == 1 {
            terms.pop()?
        } else {
            join(terms)
        })
    }

    /// `OrExpression <- AndExpression (_ "or" _ AndExpression)*`
    fn or_expr(&mut self) -> Option<Expr> {
        self.joined("or", Self::and_expr, Expr::Or)
    }

    /// `AndExpression <- NotExpression (_ "and" _ NotExpression)*`
    fn and_expr(&mut self) -> Option<Expr> {
        self.joined("and", Self::not_expr, Expr::And)
    }

    /// `NotExpression <- "not" _ NotExpression / ParenthesizedExpression`
    fn not_expr(&mut self) -> Option<Expr> {
        let save = self.pos;
        if self.lit("not") && self.ws() {
            if !self.enter() {
                return None;
            }
            let inner = self.not_expr();
            self.depth -= 1;
            if let Some(inner) = inner {
                return Some(match inner {
                    Expr::Not(double) => *double,
                    other => Expr::Not(Box::new(other)),
                });
            }
        }
        self.pos = save;
        self.paren_expr()
    }

    /// `"(" _? OrExpression _? ")" / MatchExpression`, and "Unmatched parentheses".
    fn paren_expr(&mut self) -> Option<Expr> {
        let save = self.pos;
        if self.lit("(") {
            if !self.enter() {
                return None;
            }
            self.ws();
            let inner = self.or_expr();
            self.depth -= 1;
            if let Some(inner) = inner {
                self.ws();
                if self.lit(")") {
                    return Some(inner);
                }
                self.custom(self.pos, "grouping", "Unmatched parentheses");
            }
            // A match expression never starts with "(".
            self.pos = save;
            return None;
        }
        self.pos = save;
        self.match_expr()
    }

    /// `Selector op Value / Selector is [not] empty / Value [not] in Selector`
    fn match_expr(&mut self) -> Option<Expr> {
        let start = self.pos;
        if let Some(selector) = self.selector() {
            let after_selector = self.pos;
            if let Some((kind, negated)) = self.binary_op() {
                if let Some(raw) = self.value() {
                    let op = match kind {
                        Kind::Equal => Op::Equal(raw),
                        Kind::In => Op::In(raw),
                        Kind::Matches => Op::Pattern(raw),
                    };
                    return Some(Expr::Match(Match {
                        selector,
                        op,
                        negated,
                    }));
                }
            }
            self.pos = after_selector;
            if let Some(negated) = self.empty_op() {
                return Some(Expr::Match(Match {
                    selector,
                    op: Op::Empty,
                    negated,
                }));
            }
        }
        self.pos = start;
        if let Some(raw) = self.value() {
            if let Some(negated) = self.in_op() {
                let at = self.pos;
                if let Some(selector) = self.selector() {
                    return Some(Expr::Match(Match {
                        selector,
                        op: Op::In(raw),
                        negated,
                    }));
                }
                self.custom(at, "match", "Invalid selector");
            }
        }
        self.pos = start;
        None
    }

    /// `==`, `!=`, `contains`, `not contains`, `matches`, `not matches`.
    fn binary_op(&mut self) -> Option<(Kind, bool)> {
        let start = self.pos;
        for (symbol, negated) in [("==", false), ("!=", true)] {
            self.ws();
            if self.lit(symbol) {
                self.ws();
                return Some((Kind::Equal, negated));
            }
            self.pos = start;
        }
        let forms: [(&[&str], Kind, bool); 4] = [
            (&["contains"], Kind::In, false),
            (&["not", "contains"], Kind::In, true),
            (&["matches"], Kind::Matches, false),
            (&["not", "matches"], Kind::Matches, true),
        ];
        forms
            .into_iter()
            .find(|(words, _, _)| self.words(words, true))
            .map(|(_, kind, negated)| (kind, negated))
    }

    /// `is empty` (false) or `is not empty` (true).
    fn empty_op(&mut self) -> Option<bool> {
        if self.words(&["is", "empty"], false) {
            Some(false)
        } else if self.words(&["is", "not", "empty"], false) {
            Some(true)
        } else {
            None
        }
    }

    /// `in` (false) or `not in` (true).
    fn in_op(&mut self) -> Option<bool> {
        if self.words(&["in"], true) {
            Some(false)
        } else if self.words(&["not", "in"], true) {
            Some(true)
        } else {
            None
        }
    }

    /// `Identifier ("." Identifier / Index / "." [0-9]+)*`
    fn selector(&mut self) -> Option<Vec<String>> {
        let mut path = vec![self.identifier()?];
        loop {
            let save = self.pos;
            if self.lit(".") {
                if let Some(ident) = self.identifier() {
                    path.push(ident);
                    continue;
                }
                let digits = self.pos;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
                if self.pos > digits {
                    path.push(self.slice(digits, self.pos).to_owned());
                    continue;
                }
                self.fail(digits, "[0-9]");
            }
            self.pos = save;
            if let Some(key) = self.index() {
                path.push(key);
                continue;
            }
            self.pos = save;
            break;
        }
        Some(path)
    }

    /// `[a-zA-Z][a-zA-Z0-9_]*`
    fn identifier(&mut self) -> Option<String> {
        let start = self.pos;
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'A'..=b'Z')) {
            self.fail(start, "[a-zA-Z]");
            return None;
        }
        self.pos += 1;
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_')
        ) {
            self.pos += 1;
        }
        Some(self.slice(start, self.pos).to_owned())
    }

    /// `"[" _? StringLiteral _? "]"`
    fn index(&mut self) -> Option<String> {
        if !self.lit("[") {
            return None;
        }
        self.ws();
        let at = self.pos;
        let Some(key) = self.string_literal() else {
            self.custom(at, "index", "Invalid index");
            return None;
        };
        self.ws();
        if self.lit("]") {
            return Some(key);
        }
        self.custom(self.pos, "index", "Unclosed index expression");
        None
    }

    /// `Selector / NumberLiteral / StringLiteral`, as text.
    fn value(&mut self) -> Option<String> {
        let start = self.pos;
        if let Some(selector) = self.selector() {
            return Some(selector.join("."));
        }
        self.pos = start;
        if let Some(number) = self.number() {
            return Some(number);
        }
        self.pos = start;
        self.string_literal()
    }

    /// `"-"? ("0" / [1-9][0-9]*) ("." [0-9]+)?` followed by whitespace, `)` or the end.
    fn number(&mut self) -> Option<String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
            }
            _ => {
                self.fail(self.pos, "[0-9]");
                self.pos = start;
                return None;
            }
        }
        if self.peek() == Some(b'.') && matches!(self.bytes.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        match self.peek() {
            None | Some(b' ' | b'\t' | b'\r' | b'\n' | b')') => {
                Some(self.slice(start, self.pos).to_owned())
            }
            _ => {
                self.custom(self.pos, "number", "Invalid number literal");
                self.pos = start;
                None
            }
        }
    }

    /// A backtick raw string or a double-quoted string with Go escapes.
    fn string_literal(&mut self) -> Option<String> {
        let start = self.pos;
        match self.peek() {
            Some(b'`') => {
                let body = start + 1;
                match self
                    .bytes
                    .get(body..)
                    .and_then(|r| r.iter().position(|&b| b == b'`'))
                {
                    Some(len) => {
                        self.pos = body + len + 1;
                        Some(self.slice(body, body + len).replace('\r', ""))
                    }
                    None => {
                        self.custom(self.bytes.len(), "string", "Unterminated string literal");
                        None
                    }
                }
            }
            Some(b'"') => {
                let mut at = start + 1;
                let mut escaped = false;
                loop {
                    match self.bytes.get(at) {
                        None => {
                            self.custom(self.bytes.len(), "string", "Unterminated string literal");
                            return None;
                        }
                        Some(b'\\') => escaped = !escaped,
                        Some(b'"') if !escaped => break,
                        Some(_) => escaped = false,
                    }
                    at += 1;
                }
                self.pos = at + 1;
                match unquote(self.slice(start + 1, at)) {
                    Ok(text) => Some(text),
                    Err(message) => {
                        self.custom(start, "string", message);
                        None
                    }
                }
            }
            _ => {
                self.fail(start, "\"\\\"\"");
                self.fail(start, "\"`\"");
                None
            }
        }
    }
}

/// The body of a Go double-quoted string literal, unescaped as `strconv.Unquote` does.
fn unquote(body: &str) -> Result<String, &'static str> {
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    let mut utf8 = [0u8; 4];
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Result<u32, &'static str> {
        (0..n).try_fold(0u32, |acc, _| {
            let digit = chars.next().and_then(|c| c.to_digit(16));
            digit.map(|d| acc * 16 + d).ok_or("invalid syntax")
        })
    };
    while let Some(c) = chars.next() {
        let decoded = match c {
            '\n' => return Err("invalid syntax"),
            '\\' => match chars.next() {
                Some('a') => '\x07',
                Some('b') => '\x08',
                Some('f') => '\x0C',
                Some('n') => '\n',
                Some('r') => '\r',
                Some('t') => '\t',
                Some('v') => '\x0B',
                Some('\\') => '\\',
                Some('"') => '"',
                Some('x') => {
                    out.push(u8::try_from(hex(&mut chars, 2)?).map_err(|_| "invalid syntax")?);
                    continue;
                }
                Some(first @ '0'..='7') => {
                    let mut value = first.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        let digit = chars.next().and_then(|c| c.to_digit(8));
                        value = value * 8 + digit.ok_or("invalid syntax")?;
                    }
                    out.push(u8::try_from(value).map_err(|_| "invalid syntax")?);
                    continue;
                }
                Some('u') => char::from_u32(hex(&mut chars, 4)?).ok_or("invalid syntax")?,
                Some('U') => char::from_u32(hex(&mut chars, 8)?).ok_or("invalid syntax")?,
                _ => return Err("invalid syntax"),
            },
            other => other,
        };
        out.extend_from_slice(decoded.encode_utf8(&mut utf8).as_bytes());
    }
    String::from_utf8(out).map_err(|_| "invalid UTF-8 in string literal")
}
