//! `?filter=`: Consul's filter expression language (HashiCorp go-bexpr v0.1.2, the version
//! Consul pins), parsed once per request and evaluated against the JSON each endpoint returns.
//!
//! This module owns the grammar, the evaluation rules and [`apply`] (keep the matching items of
//! a JSON array, or the matching values of a JSON map such as `/v1/agent/services`). It does not
//! know which endpoints accept `?filter=`, nor which selectors each one offers: the caller parses
//! with [`Filter::parse`], answers 400 with the error text, and filters its response body.
//!
//! # Grammar
//!
//! ```text
//! <Selector> == <Value>        <Selector> != <Value>
//! <Selector> is empty          <Selector> is not empty
//! <Value> in <Selector>        <Value> not in <Selector>
//! <Selector> contains <Value>  <Selector> not contains <Value>
//! <Selector> matches <Value>   <Selector> not matches <Value>
//! <Expr> and <Expr>    <Expr> or <Expr>    not <Expr>    ( <Expr> )
//! ```
//!
//! Precedence is `not` over `and` over `or`. Keywords are lower case and case-sensitive, and,
//! as in bexpr's PEG grammar, `and`, `or`, `not`, `in`, `contains`, `matches` and `is` need
//! whitespace on both sides (`==`/`!=` do not). A selector is `Ident(.Ident | .Digits |
//! ["key"])*` with `Ident = [a-zA-Z][a-zA-Z0-9_]*`; `["key"]` reaches map keys that are not
//! identifiers (`Service.Meta["my-key"]`). A value is a bare selector-shaped word (`web`,
//! `v1.2.3`: taken as text), a number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?`), a double-quoted string
//! with Go escapes (`\n`, `\t`, `\\`, `\"`, `\xHH`, `\ooo`, `\uHHHH`, `\UHHHHHHHH`) or a
//! backtick raw string (no escapes; carriage returns dropped, as Go's `strconv.Unquote` does).
//!
//! # Evaluation
//!
//! * Field names are matched exactly (Consul's selectors are its Go field names, which are
//!   also its JSON names); there is no case-insensitive fallback, as in Consul.
//! * Values are text; they are compared with a JSON string by equality, with a JSON number
//!   numerically (Go `ParseInt` base-0 syntax such as `0x1F` for integers, else as a float), and
//!   with a JSON bool through Go's `ParseBool` (`true`, `T`, `1`, `false`, `F`, `0`, ...).
//! * `in`/`contains`: substring of a string, element of a list (same comparison as `==`), key
//!   of a map.
//! * `is empty`: a string, list or map of length 0, `null`, or an absent field.
//! * A selector that runs into a **list before its end** (`Checks.Status` on
//!   `/v1/health/service`, where `Checks` is a list of objects) is an implicit ANY, exactly as in
//!   bexpr v0.1.2: the whole match expression, negation included, is evaluated on each element
//!   and is true if it is true for at least one. So `Checks.Status == passing` is "some check
//!   passes", `Checks.Status != passing` is "some check does not pass",
//!   `not Checks.Status == passing` is "no check passes", and every one of them is false for an
//!   empty list.
//! * An absent map key or `null` (`Service.Meta.version` on a service without that key) follows
//!   bexpr's not-present rule: `==`, `in`, `contains`, `matches` and `is not empty` are false;
//!   `!=`, `not in`, `not contains`, `not matches` and `is empty` are true.
//! * An empty expression is no filter: everything matches (bexpr's nil filter).
//!
//! # Where this differs from Consul
//!
//! Consul evaluates typed Go structs and rejects a bad expression with a 400 before it runs.
//! Over JSON there are no types to check against, so instead:
//!
//! * **Unknown selectors** (`Servce == web`) are refused by [`Filter::check_selectors`]
//!   against the endpoint's list (`http::selectors`, from Consul's docs), with Consul's
//!   `Selector "..." is not valid`. A known selector whose field is absent from an item
//!   follows the not-present rule above. A selector that tries to descend into a string,
//!   number or bool is never matched, negated or not.
//! * **Operator/type mismatches** (`Port contains 1`, `Port is empty`, `Port == abc`, `Port
//!   matches 1`) make the match expression false, negated or not (Consul: 400).
//! * `==`, `!=`, `matches` and `not matches` on a list selector apply to its elements with the
//!   same implicit ANY (Consul: 400); `in`, `contains` and `is empty` apply to the list itself.
//! * `matches` uses this module's own regular expression engine, an RE2 subset (the `regex`
//!   crate is not a dependency): literals, `.`, `[...]` classes with ranges, negation, `\d \w
//!   \s \D \W \S` and ASCII `[:name:]` classes, `^ $ \A \z \b \B`, groups `( )`, `(?: )`,
//!   `(?P<name> )`, `(?<name> )`, flags `(?i) (?m) (?s) (?U)` and `(?flags: )`, alternation,
//!   `* + ? {n} {n,} {n,m}` (lazy forms accepted; bounds up to 1000), escapes `\n \t \r \f \v
//!   \a \xHH \x{H..} \ooo \Q...\E` and escaped punctuation. Unicode classes (`\pL`, `\p{Greek}`)
//!   and anything else unsupported are a 400. Matching is unanchored and runs in time linear in
//!   the text (a Pike VM); programs are capped at 10 000 instructions.
//! * Inside double-quoted strings `\"` is accepted (bexpr's grammar ends the string at any `"`).
//! * Parse errors keep Consul's `Failed to create boolean expression evaluator: ` prefix and
//!   pigeon's `line:col (offset): ...` shape, but the "expected" lists are this parser's own.
//! * Newer bexpr releases' JSON-pointer selectors (`"/Service/Name"`), `all`/`any` collection
//!   expressions and `<`/`>` are not part of Consul's grammar and are not supported.
//! * Expressions are limited to [`MAX_EXPRESSION_BYTES`] bytes and [`MAX_NESTING`] levels of
//!   parentheses and `not`; nothing here panics on any input.

use serde_json::{Number, Value};

/// The longest expression accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4096;

/// How deeply parentheses and `not` may nest.
pub const MAX_NESTING: usize = 32;

/// Consul's prefix for every expression error.
const ERROR_PREFIX: &str = "Failed to create boolean expression evaluator: ";

/// A parsed `?filter=` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// `None` for the empty expression, which matches everything.
    expr: Option<Expr>,
}

impl Filter {
    /// Parses an expression; the error is the message for a 400, with Consul's prefix
    /// `Failed to create boolean expression evaluator: `. The empty string is no filter.
    pub fn parse(expression: &str) -> Result<Filter, String> {
        if expression.is_empty() {
            return Ok(Filter { expr: None });
        }
        if expression.len() > MAX_EXPRESSION_BYTES {
            return Err(format!(
                "{ERROR_PREFIX}the expression is {} bytes long; the limit is {MAX_EXPRESSION_BYTES}",
                expression.len()
            ));
        }
        let mut expr = Parser::new(expression)
            .parse()
            .map_err(|e| format!("{ERROR_PREFIX}{e}"))?;
        compile_patterns(&mut expr).map_err(|e| format!("{ERROR_PREFIX}{e}"))?;
        Ok(Filter { expr: Some(expr) })
    }

    /// Refuses a selector the endpoint does not have, as Consul does (`Selector "X" is not
    /// valid`). `allowed` are dotted selectors, `*` standing for any map key.
    pub fn check_selectors(&self, allowed: &[&str]) -> Result<(), String> {
        let mut selectors = Vec::new();
        if let Some(expr) = &self.expr {
            expr.selectors(&mut selectors);
        }
        for selector in selectors {
            let known = allowed.iter().any(|pattern| {
                let parts: Vec<&str> = pattern.split('.').collect();
                parts.len() == selector.len()
                    && parts
                        .iter()
                        .zip(selector)
                        .all(|(want, have)| *want == "*" || want == have)
            });
            if !known {
                return Err(format!(
                    "{ERROR_PREFIX}Selector {:?} is not valid",
                    selector.join(".")
                ));
            }
        }
        Ok(())
    }

    /// Whether one item (the JSON object the endpoint returns for it, with Consul's PascalCase
    /// field names) matches.
    pub fn matches(&self, item: &Value) -> bool {
        self.expr.as_ref().is_none_or(|expr| expr.eval(item))
    }
}

/// Keeps the items of a JSON array, or the values of a JSON object (endpoints that return a
/// map, such as `/v1/agent/services`), that match. Any other value is returned unchanged.
pub fn apply(filter: &Filter, value: Value) -> Value {
    match value {
        Value::Array(items) => {
            Value::Array(items.into_iter().filter(|i| filter.matches(i)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, item)| filter.matches(item))
                .collect(),
        ),
        other => other,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

/// One matching expression: a selector, an operator and whether the operator is negated
/// (`!=`, `not in`, `not contains`, `is not empty`, `not matches`).
#[derive(Debug, Clone, PartialEq)]
struct Match {
    selector: Vec<String>,
    op: Op,
    negated: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// `==`: the value's text.
    Equal(String),
    /// `in` / `contains`: the value's text.
    In(String),
    /// `is empty`.
    Empty,
    /// `matches` before its pattern is compiled (only while parsing).
    Pattern(String),
    /// `matches`.
    Matches(Box<re::Regex>),
}

impl Expr {
    fn selectors<'a>(&'a self, out: &mut Vec<&'a Vec<String>>) {
        match self {
            Expr::Or(all) | Expr::And(all) => all.iter().for_each(|e| e.selectors(out)),
            Expr::Not(inner) => inner.selectors(out),
            Expr::Match(m) => out.push(&m.selector),
        }
    }

    fn eval(&self, item: &Value) -> bool {
        match self {
            Expr::Or(terms) => terms.iter().any(|e| e.eval(item)),
            Expr::And(terms) => terms.iter().all(|e| e.eval(item)),
            Expr::Not(inner) => !inner.eval(item),
            Expr::Match(m) => m.eval(Some(item), 0),
        }
    }
}

impl Match {
    /// Evaluates at `value`, which `selector[..depth]` led to (`None`: absent).
    fn eval(&self, value: Option<&Value>, depth: usize) -> bool {
        let value = match value {
            None | Some(Value::Null) => return self.not_present(),
            Some(value) => value,
        };
        if let Some(segment) = self.selector.get(depth) {
            return match value {
                Value::Object(map) => self.eval(map.get(segment.as_str()), depth + 1),
                // bexpr: operations through a list are an implicit ANY over its elements.
                Value::Array(items) => items.iter().any(|item| self.eval(Some(item), depth)),
                _ => false,
            };
        }
        if let (Value::Array(items), Op::Equal(_) | Op::Matches(_)) = (value, &self.op) {
            return items.iter().any(|item| self.eval(Some(item), depth));
        }
        match self.op.test(value) {
            Some(result) => result != self.negated,
            None => false,
        }
    }

    /// bexpr's answer for a missing map key: only "is empty" holds, then negation applies.
    fn not_present(&self) -> bool {
        matches!(self.op, Op::Empty) != self.negated
    }
}

impl Op {
    /// The un-negated operator on a present value; `None` when it does not apply to its type.
    fn test(&self, value: &Value) -> Option<bool> {
        match (self, value) {
            (Op::Equal(raw), value) => scalar_eq(value, raw),
            (Op::In(raw), Value::String(s)) => Some(s.contains(raw.as_str())),
            (Op::In(raw), Value::Array(items)) => {
                Some(items.iter().any(|item| scalar_eq(item, raw) == Some(true)))
            }
            (Op::In(raw), Value::Object(map)) => Some(map.contains_key(raw.as_str())),
            (Op::Empty, Value::String(s)) => Some(s.is_empty()),
            (Op::Empty, Value::Array(items)) => Some(items.is_empty()),
            (Op::Empty, Value::Object(map)) => Some(map.is_empty()),
            (Op::Matches(re), Value::String(s)) => Some(re.is_match(s)),
            _ => None,
        }
    }
}

/// Compares a JSON scalar with a value's text the way bexpr coerces the text to the field's
/// type; `None` when the text does not convert or the JSON value is not a scalar.
fn scalar_eq(value: &Value, raw: &str) -> Option<bool> {
    match value {
        Value::String(s) => Some(s == raw),
        Value::Number(n) => number_eq(n, raw),
        Value::Bool(b) => parse_go_bool(raw).map(|r| r == *b),
        _ => None,
    }
}

fn number_eq(n: &Number, raw: &str) -> Option<bool> {
    let integer = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from));
    if let (Some(integer), Some(parsed)) = (integer, parse_go_int(raw)) {
        return Some(integer == parsed);
    }
    let float = n.as_f64()?;
    let parsed: f64 = raw.parse().ok()?;
    Some(float == parsed)
}

/// Go's `strconv.ParseInt(s, 0, 64)` syntax: sign, then `0x`/`0o`/`0b` prefixes or a leading
/// `0` for octal; underscores are not accepted.
fn parse_go_int(raw: &str) -> Option<i128> {
    let (negative, digits) = match raw.as_bytes().first() {
        Some(b'-') => (true, raw.get(1..)?),
        Some(b'+') => (false, raw.get(1..)?),
        _ => (false, raw),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower.get(1..).unwrap_or(""))
    } else {
        (10, lower.as_str())
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    let value = i128::from(magnitude);
    let value = if negative { -value } else { value };
    (i128::from(i64::MIN)..=i128::from(u64::MAX))
        .contains(&value)
        .then_some(value)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Compiles every `matches` pattern (bexpr does this when it validates, before evaluation).
fn compile_patterns(expr: &mut Expr) -> Result<(), String> {
    match expr {
        Expr::Or(terms) | Expr::And(terms) => terms.iter_mut().try_for_each(compile_patterns),
        Expr::Not(inner) => compile_patterns(inner),
        Expr::Match(m) => {
            if let Op::Pattern(source) = &m.op {
                let re = re::Regex::new(source)
                    .map_err(|e| format!("Failed to compile regular expression {source:?}: {e}"))?;
                m.op = Op::Matches(Box::new(re));
            }
            Ok(())
        }
    }
}

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
struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    fail_pos: usize,
    expected: Vec<String>,
    error: Option<String>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
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

    fn parse(mut self) -> Result<Expr, String> {
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

/// A small RE2-subset regular expression engine for `matches`: a parser to an AST, a compiler
/// to a Thompson program and a Pike VM that answers "is there a match anywhere" in time linear
/// in the text. Only match/no-match is needed, so captures and greediness are irrelevant.
mod re {
    /// RE2's largest repetition count.
    const MAX_REPEAT: u32 = 1000;
    /// The largest compiled program.
    const MAX_INSTRUCTIONS: usize = 10_000;
    /// How deeply groups may nest.
    const MAX_GROUP_DEPTH: usize = 100;

    type Result<T> = std::result::Result<T, String>;

    /// A compiled pattern.
    #[derive(Debug, Clone, PartialEq)]
    pub(super) struct Regex {
        program: Vec<Inst>,
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Inst {
        Char(char),
        /// A case-insensitive character, stored folded.
        CharFold(char),
        /// Any character.
        Any,
        /// Any character but `\n`.
        AnyNotNl,
        Class(Class),
        Look(Look),
        Split(usize, usize),
        Jmp(usize),
        Match,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Look {
        StartText,
        EndText,
        StartLine,
        EndLine,
        WordBoundary,
        NotWordBoundary,
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Class {
        negated: bool,
        fold: bool,
        items: Vec<Item>,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Item {
        Range(char, char),
        /// A named class, possibly negated (`\D`, `[:^alpha:]`).
        Named(Named, bool),
    }

    /// Perl (`\d \w \s`) and ASCII POSIX classes, as RE2 defines them.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Named {
        Digit,
        Word,
        PerlSpace,
        Alnum,
        Alpha,
        Ascii,
        Blank,
        Cntrl,
        Graph,
        Lower,
        Print,
        Punct,
        Space,
        Upper,
        Xdigit,
    }

    #[derive(Debug)]
    enum Node {
        Empty,
        Char(char, bool),
        Any(bool),
        Class(Class),
        Look(Look),
        Concat(Vec<Node>),
        Alt(Vec<Node>),
        Repeat(Box<Node>, u32, Option<u32>),
    }

    #[derive(Clone, Copy, Default)]
    struct Flags {
        fold: bool,
        multi_line: bool,
        dot_nl: bool,
    }

    impl Named {
        fn from_posix(name: &str) -> Option<Named> {
            Some(match name {
                "alnum" => Named::Alnum,
                "alpha" => Named::Alpha,
                "ascii" => Named::Ascii,
                "blank" => Named::Blank,
                "cntrl" => Named::Cntrl,
                "digit" => Named::Digit,
                "graph" => Named::Graph,
                "lower" => Named::Lower,
                "print" => Named::Print,
                "punct" => Named::Punct,
                "space" => Named::Space,
                "upper" => Named::Upper,
                "word" => Named::Word,
                "xdigit" => Named::Xdigit,
                _ => return None,
            })
        }

        fn contains(self, c: char) -> bool {
            match self {
                Named::Digit => c.is_ascii_digit(),
                Named::Word => c.is_ascii_alphanumeric() || c == '_',
                Named::PerlSpace => matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' '),
                Named::Alnum => c.is_ascii_alphanumeric(),
                Named::Alpha => c.is_ascii_alphabetic(),
                Named::Ascii => c.is_ascii(),
                Named::Blank => matches!(c, ' ' | '\t'),
                Named::Cntrl => c.is_ascii_control(),
                Named::Graph => c.is_ascii_graphic(),
                Named::Lower => c.is_ascii_lowercase(),
                Named::Print => c.is_ascii_graphic() || c == ' ',
                Named::Punct => c.is_ascii_punctuation(),
                Named::Space => matches!(c, '\t' | '\n' | '\x0B' | '\x0C' | '\r' | ' '),
                Named::Upper => c.is_ascii_uppercase(),
                Named::Xdigit => c.is_ascii_hexdigit(),
            }
        }
    }

    impl Class {
        fn single(named: Named, negated: bool) -> Class {
            Class {
                negated: false,
                fold: false,
                items: vec![Item::Named(named, negated)],
            }
        }

        fn contains(&self, c: char) -> bool {
            self.items.iter().any(|item| match *item {
                Item::Range(lo, hi) => lo <= c && c <= hi,
                Item::Named(named, negated) => named.contains(c) != negated,
            })
        }

        fn matches(&self, c: char) -> bool {
            let hit = self.contains(c)
                || (self.fold
                    && (self.contains(simple_lower(c)) || self.contains(simple_upper(c))));
            hit != self.negated
        }
    }

    /// The single-character lower case of `c`, or `c`.
    fn simple_lower(c: char) -> char {
        let mut lower = c.to_lowercase();
        match (lower.next(), lower.next()) {
            (Some(l), None) => l,
            _ => c,
        }
    }

    /// The single-character upper case of `c`, or `c`.
    fn simple_upper(c: char) -> char {
        let mut upper = c.to_uppercase();
        match (upper.next(), upper.next()) {
            (Some(u), None) => u,
            _ => c,
        }
    }

    fn is_word(c: Option<char>) -> bool {
        c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    impl Look {
        fn holds(self, text: &[char], at: usize) -> bool {
            let prev = at.checked_sub(1).and_then(|i| text.get(i)).copied();
            let next = text.get(at).copied();
            match self {
                Look::StartText => at == 0,
                Look::EndText => next.is_none(),
                Look::StartLine => prev.is_none() || prev == Some('\n'),
                Look::EndLine => next.is_none() || next == Some('\n'),
                Look::WordBoundary => is_word(prev) != is_word(next),
                Look::NotWordBoundary => is_word(prev) == is_word(next),
            }
        }
    }

    impl Regex {
        /// Compiles `pattern`; the error reads like Go's `error parsing regexp: ...`.
        pub(super) fn new(pattern: &str) -> Result<Regex> {
            let mut parser = Parser {
                pattern,
                chars: pattern.chars().collect(),
                pos: 0,
                flags: Flags::default(),
                depth: 0,
            };
            let node = parser.parse_alt()?;
            if parser.pos < parser.chars.len() {
                return Err(parser.error("unexpected )"));
            }
            let mut compiler = Compiler {
                program: Vec::new(),
                steps: 0,
            };
            compiler.compile(&node)?;
            compiler.push(Inst::Match)?;
            Ok(Regex {
                program: compiler.program,
            })
        }

        /// Whether the pattern matches anywhere in `text`.
        pub(super) fn is_match(&self, text: &str) -> bool {
            let text: Vec<char> = text.chars().collect();
            let mut current = Threads::new(self.program.len());
            let mut next = Threads::new(self.program.len());
            let mut stack = Vec::new();
            for at in 0..=text.len() {
                // Unanchored: a new thread starts at every position.
                self.add(&mut current, &mut stack, 0, &text, at);
                let c = text.get(at).copied();
                for &pc in &current.dense {
                    let advance = match (self.program.get(pc), c) {
                        (Some(Inst::Match), _) => return true,
                        (Some(Inst::Char(want)), Some(c)) => *want == c,
                        (Some(Inst::CharFold(want)), Some(c)) => *want == simple_lower(c),
                        (Some(Inst::Any), Some(_)) => true,
                        (Some(Inst::AnyNotNl), Some(c)) => c != '\n',
                        (Some(Inst::Class(class)), Some(c)) => class.matches(c),
                        _ => false,
                    };
                    if advance {
                        self.add(&mut next, &mut stack, pc + 1, &text, at + 1);
                    }
                }
                std::mem::swap(&mut current, &mut next);
                next.clear();
            }
            false
        }

        /// Adds `pc` and everything reachable from it without consuming a character.
        fn add(
            &self,
            list: &mut Threads,
            stack: &mut Vec<usize>,
            pc: usize,
            text: &[char],
            at: usize,
        ) {
            stack.push(pc);
            while let Some(pc) = stack.pop() {
                if !list.insert(pc) {
                    continue;
                }
                match self.program.get(pc) {
                    Some(Inst::Jmp(to)) => stack.push(*to),
                    Some(Inst::Split(first, second)) => {
                        stack.push(*second);
                        stack.push(*first);
                    }
                    Some(Inst::Look(look)) if look.holds(text, at) => stack.push(pc + 1),
                    _ => {}
                }
            }
        }
    }

    /// A set of program counters with insertion order and O(1) clear.
    struct Threads {
        dense: Vec<usize>,
        mark: Vec<usize>,
        generation: usize,
    }

    impl Threads {
        fn new(size: usize) -> Threads {
            Threads {
                dense: Vec::with_capacity(size),
                mark: vec![0; size],
                generation: 1,
            }
        }

        fn insert(&mut self, pc: usize) -> bool {
            match self.mark.get_mut(pc) {
                Some(mark) if *mark != self.generation => {
                    *mark = self.generation;
                    self.dense.push(pc);
                    true
                }
                _ => false,
            }
        }

        fn clear(&mut self) {
            self.dense.clear();
            self.generation += 1;
        }
    }

    struct Compiler {
        program: Vec<Inst>,
        /// Nodes compiled so far: an empty group repeated (`(){1000}` nested) emits no
        /// instructions, so the instruction cap alone would not stop it.
        steps: usize,
    }

    impl Compiler {
        fn push(&mut self, inst: Inst) -> Result<usize> {
            if self.program.len() >= MAX_INSTRUCTIONS {
                return Err(format!(
                    "error parsing regexp: expression too large (over {MAX_INSTRUCTIONS} instructions)"
                ));
            }
            self.program.push(inst);
            Ok(self.program.len() - 1)
        }

        fn set(&mut self, at: usize, inst: Inst) {
            if let Some(slot) = self.program.get_mut(at) {
                *slot = inst;
            }
        }

        fn compile(&mut self, node: &Node) -> Result<()> {
            self.steps += 1;
            if self.steps > MAX_INSTRUCTIONS * 4 {
                return Err(format!(
                    "error parsing regexp: expression too large (over {MAX_INSTRUCTIONS} instructions)"
                ));
            }
            match node {
                Node::Empty => {}
                Node::Char(c, false) => {
                    self.push(Inst::Char(*c))?;
                }
                Node::Char(c, true) => {
                    self.push(Inst::CharFold(simple_lower(*c)))?;
                }
                Node::Any(true) => {
                    self.push(Inst::Any)?;
                }
                Node::Any(false) => {
                    self.push(Inst::AnyNotNl)?;
                }
                Node::Class(class) => {
                    self.push(Inst::Class(class.clone()))?;
                }
                Node::Look(look) => {
                    self.push(Inst::Look(*look))?;
                }
                Node::Concat(items) => {
                    for item in items {
                        self.compile(item)?;
                    }
                }
                Node::Alt(branches) => {
                    let mut jumps = Vec::new();
                    let last = branches.len().saturating_sub(1);
                    for (i, branch) in branches.iter().enumerate() {
                        if i == last {
                            self.compile(branch)?;
                        } else {
                            let split = self.push(Inst::Split(0, 0))?;
                            self.compile(branch)?;
                            jumps.push(self.push(Inst::Jmp(0))?);
                            let next = self.program.len();
                            self.set(split, Inst::Split(split + 1, next));
                        }
                    }
                    let end = self.program.len();
                    for jump in jumps {
                        self.set(jump, Inst::Jmp(end));
                    }
                }
                Node::Repeat(inner, min, max) => {
                    for _ in 0..*min {
                        self.compile(inner)?;
                    }
                    match max {
                        None => {
                            let split = self.push(Inst::Split(0, 0))?;
                            self.compile(inner)?;
                            self.push(Inst::Jmp(split))?;
                            let end = self.program.len();
                            self.set(split, Inst::Split(split + 1, end));
                        }
                        Some(max) => {
                            let mut splits = Vec::new();
                            for _ in *min..*max {
                                splits.push(self.push(Inst::Split(0, 0))?);
                                self.compile(inner)?;
                            }
                            let end = self.program.len();
                            for split in splits {
                                self.set(split, Inst::Split(split + 1, end));
                            }
                        }
                    }
                }
            }
            Ok(())
        }
    }

    struct Parser<'a> {
        pattern: &'a str,
        chars: Vec<char>,
        pos: usize,
        flags: Flags,
        depth: usize,
    }

    impl Parser<'_> {
        fn error(&self, what: &str) -> String {
            format!("error parsing regexp: {what}: `{}`", self.pattern)
        }

        fn peek(&self) -> Option<char> {
            self.chars.get(self.pos).copied()
        }

        fn peek_at(&self, ahead: usize) -> Option<char> {
            self.chars.get(self.pos + ahead).copied()
        }

        fn bump(&mut self) -> Option<char> {
            let c = self.peek()?;
            self.pos += 1;
            Some(c)
        }

        fn parse_alt(&mut self) -> Result<Node> {
            let mut branches = vec![self.parse_concat()?];
            while self.peek() == Some('|') {
                self.pos += 1;
                branches.push(self.parse_concat()?);
            }
            Ok(if branches.len() == 1 {
                branches.pop().unwrap_or(Node::Empty)
            } else {
                Node::Alt(branches)
            })
        }

        fn parse_concat(&mut self) -> Result<Node> {
            let mut items = Vec::new();
            while let Some(c) = self.peek() {
                if c == '|' || c == ')' {
                    break;
                }
                if let Some(atom) = self.parse_atom()? {
                    items.push(self.parse_repeats(atom)?);
                }
            }
            Ok(match items.len() {
                0 => Node::Empty,
                1 => items.pop().unwrap_or(Node::Empty),
                _ => Node::Concat(items),
            })
        }

        /// One atom; `None` for a flag group such as `(?i)`, which matches nothing itself.
        fn parse_atom(&mut self) -> Result<Option<Node>> {
            let Some(c) = self.bump() else {
                return Ok(None);
            };
            let node = match c {
                '(' => return self.parse_group(),
                '[' => self.parse_class()?,
                '.' => Node::Any(self.flags.dot_nl),
                '^' => Node::Look(if self.flags.multi_line {
                    Look::StartLine
                } else {
                    Look::StartText
                }),
                '$' => Node::Look(if self.flags.multi_line {
                    Look::EndLine
                } else {
                    Look::EndText
                }),
                '\\' => self.parse_escape()?,
                '*' | '+' | '?' => {
                    return Err(self.error("missing argument to repetition operator"))
                }
                '{' => {
                    self.pos -= 1;
                    if self.repeat_braces()?.is_some() {
                        return Err(self.error("missing argument to repetition operator"));
                    }
                    self.pos += 1;
                    Node::Char('{', self.flags.fold)
                }
                c => Node::Char(c, self.flags.fold),
            };
            Ok(Some(node))
        }

        fn parse_repeats(&mut self, atom: Node) -> Result<Node> {
            let mut node = atom;
            let mut repeated = false;
            loop {
                let (min, max) = match self.peek() {
                    Some('*') => {
                        self.pos += 1;
                        (0, None)
                    }
                    Some('+') => {
                        self.pos += 1;
                        (1, None)
                    }
                    Some('?') => {
                        self.pos += 1;
                        (0, Some(1))
                    }
                    Some('{') => match self.repeat_braces()? {
                        Some(bounds) => bounds,
                        None => break,
                    },
                    _ => break,
                };
                if repeated {
                    return Err(self.error("invalid nested repetition operator"));
                }
                if self.peek() == Some('?') {
                    // Lazy: the same set of matches.
                    self.pos += 1;
                }
                repeated = true;
                node = Node::Repeat(Box::new(node), min, max);
            }
            Ok(node)
        }

        /// `{n}`, `{n,}` or `{n,m}` at the current `{`: consumed and returned if well formed,
        /// otherwise `None` with nothing consumed (RE2 then reads `{` literally).
        fn repeat_braces(&mut self) -> Result<Option<(u32, Option<u32>)>> {
            let start = self.pos;
            let restore = |parser: &mut Self| {
                parser.pos = start;
                Ok(None)
            };
            if self.bump() != Some('{') {
                return restore(self);
            }
            let Some(min) = self.decimal() else {
                return restore(self);
            };
            let max = if self.peek() == Some(',') {
                self.pos += 1;
                if self.peek() == Some('}') {
                    None
                } else {
                    match self.decimal() {
                        Some(max) => Some(max),
                        None => return restore(self),
                    }
                }
            } else {
                Some(min)
            };
            if self.bump() != Some('}') {
                return restore(self);
            }
            if min > MAX_REPEAT || max.is_some_and(|max| max > MAX_REPEAT || max < min) {
                return Err(self.error("invalid repeat count"));
            }
            Ok(Some((min, max)))
        }

        fn decimal(&mut self) -> Option<u32> {
            let start = self.pos;
            let mut value: u32 = 0;
            while let Some(digit) = self.peek().and_then(|c| c.to_digit(10)) {
                value = value.saturating_mul(10).saturating_add(digit);
                self.pos += 1;
            }
            (self.pos > start).then_some(value)
        }

        /// After `(`.
        fn parse_group(&mut self) -> Result<Option<Node>> {
            if self.depth >= MAX_GROUP_DEPTH {
                return Err(self.error("expression nests too deeply"));
            }
            let saved = self.flags;
            if self.peek() == Some('?') {
                self.pos += 1;
                match self.peek() {
                    Some(':') => self.pos += 1,
                    Some('P') if self.peek_at(1) == Some('<') => {
                        self.pos += 2;
                        self.group_name()?;
                    }
                    Some('<') => {
                        self.pos += 1;
                        self.group_name()?;
                    }
                    _ => {
                        // Flags: (?flags) for the rest of the group, (?flags:re) for re.
                        let mut flags = self.flags;
                        let mut negate = false;
                        let mut need_flag = true;
                        loop {
                            match self.bump() {
                                Some(c @ ('i' | 'm' | 's' | 'U')) => {
                                    match c {
                                        'i' => flags.fold = !negate,
                                        'm' => flags.multi_line = !negate,
                                        's' => flags.dot_nl = !negate,
                                        _ => {} // ungreedy: no effect on whether it matches
                                    }
                                    need_flag = false;
                                }
                                Some('-') if !negate => {
                                    negate = true;
                                    need_flag = true;
                                }
                                Some(')') if !need_flag => {
                                    self.flags = flags;
                                    return Ok(None);
                                }
                                Some(':') if !need_flag => {
                                    self.flags = flags;
                                    break;
                                }
                                _ => return Err(self.error("invalid or unsupported Perl syntax")),
                            }
                        }
                    }
                }
            }
            self.depth += 1;
            let node = self.parse_alt()?;
            self.depth -= 1;
            if self.bump() != Some(')') {
                return Err(self.error("missing closing )"));
            }
            self.flags = saved;
            Ok(Some(node))
        }

        /// `name>` of a named group.
        fn group_name(&mut self) -> Result<()> {
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.pos += 1;
            }
            if self.pos == start || self.bump() != Some('>') {
                return Err(self.error("invalid named capture"));
            }
            Ok(())
        }

        /// After `\` outside a class.
        fn parse_escape(&mut self) -> Result<Node> {
            let Some(c) = self.bump() else {
                return Err(self.error("trailing backslash at end of expression"));
            };
            Ok(match c {
                'd' => Node::Class(Class::single(Named::Digit, false)),
                'D' => Node::Class(Class::single(Named::Digit, true)),
                'w' => Node::Class(Class::single(Named::Word, false)),
                'W' => Node::Class(Class::single(Named::Word, true)),
                's' => Node::Class(Class::single(Named::PerlSpace, false)),
                'S' => Node::Class(Class::single(Named::PerlSpace, true)),
                'b' => Node::Look(Look::WordBoundary),
                'B' => Node::Look(Look::NotWordBoundary),
                'A' => Node::Look(Look::StartText),
                'z' => Node::Look(Look::EndText),
                'Q' => {
                    let mut items = Vec::new();
                    while let Some(c) = self.bump() {
                        if c == '\\' && self.peek() == Some('E') {
                            self.pos += 1;
                            break;
                        }
                        items.push(Node::Char(c, self.flags.fold));
                    }
                    Node::Concat(items)
                }
                c => Node::Char(self.escape_char(c)?, self.flags.fold),
            })
        }

        /// A character escape (`\n`, `\x41`, `\101`, `\.`), after the backslash and `c`.
        fn escape_char(&mut self, c: char) -> Result<char> {
            Ok(match c {
                'a' => '\x07',
                'f' => '\x0C',
                't' => '\t',
                'n' => '\n',
                'r' => '\r',
                'v' => '\x0B',
                'x' => {
                    let mut value: u32 = 0;
                    if self.peek() == Some('{') {
                        self.pos += 1;
                        let mut digits = 0;
                        while let Some(d) = self.peek().and_then(|c| c.to_digit(16)) {
                            value = value.saturating_mul(16).saturating_add(d);
                            digits += 1;
                            self.pos += 1;
                        }
                        if digits == 0 || self.bump() != Some('}') {
                            return Err(self.error("invalid escape sequence"));
                        }
                    } else {
                        for _ in 0..2 {
                            let Some(d) = self.bump().and_then(|c| c.to_digit(16)) else {
                                return Err(self.error("invalid escape sequence"));
                            };
                            value = value * 16 + d;
                        }
                    }
                    char::from_u32(value).ok_or_else(|| self.error("invalid escape sequence"))?
                }
                '0'..='7' => {
                    // A lone non-zero digit would be a backreference, which RE2 lacks.
                    let next_is_octal = self.peek().is_some_and(|c| ('0'..='7').contains(&c));
                    if c != '0' && !next_is_octal {
                        return Err(self.error("invalid escape sequence"));
                    }
                    let mut value = c.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                value = value * 8 + d;
                                self.pos += 1;
                            }
                            None => break,
                        }
                    }
                    char::from_u32(value).ok_or_else(|| self.error("invalid escape sequence"))?
                }
                'p' | 'P' => return Err(self.error(
                    "Unicode class escapes are not supported by this filter's regular expressions",
                )),
                c if c.is_ascii() && !c.is_ascii_alphanumeric() => c,
                _ => return Err(self.error("invalid escape sequence")),
            })
        }

        /// After `[`.
        fn parse_class(&mut self) -> Result<Node> {
            let mut class = Class {
                negated: false,
                fold: self.flags.fold,
                items: Vec::new(),
            };
            if self.peek() == Some('^') {
                class.negated = true;
                self.pos += 1;
            }
            let mut first = true;
            loop {
                let Some(c) = self.peek() else {
                    return Err(self.error("missing closing ]"));
                };
                if c == ']' && !first {
                    self.pos += 1;
                    break;
                }
                first = false;
                if c == '[' && self.peek_at(1) == Some(':') {
                    if let Some(item) = self.posix_class()? {
                        class.items.push(item);
                        continue;
                    }
                }
                let lo = match self.class_char()? {
                    ClassChar::Char(lo) => lo,
                    ClassChar::Named(item) => {
                        class.items.push(item);
                        continue;
                    }
                };
                if self.peek() == Some('-') && self.peek_at(1).is_some_and(|n| n != ']') {
                    self.pos += 1;
                    let ClassChar::Char(hi) = self.class_char()? else {
                        return Err(self.error("invalid character class range"));
                    };
                    if hi < lo {
                        return Err(self.error("invalid character class range"));
                    }
                    class.items.push(Item::Range(lo, hi));
                } else {
                    class.items.push(Item::Range(lo, lo));
                }
            }
            Ok(Node::Class(class))
        }

        /// `[:name:]` or `[:^name:]` at the current `[`; `None` (nothing consumed) if there is
        /// no closing `:]`.
        fn posix_class(&mut self) -> Result<Option<Item>> {
            let rest: String = self.chars.iter().skip(self.pos + 2).collect();
            let Some(end) = rest.find(":]") else {
                return Ok(None);
            };
            let name = rest.get(..end).unwrap_or("");
            let (negated, name) = match name.strip_prefix('^') {
                Some(name) => (true, name),
                None => (false, name),
            };
            let Some(named) = Named::from_posix(name) else {
                return Err(self.error("invalid character class range"));
            };
            self.pos += 2 + rest.get(..end).unwrap_or("").chars().count() + 2;
            Ok(Some(Item::Named(named, negated)))
        }

        /// One character inside a class, or a Perl class escape.
        fn class_char(&mut self) -> Result<ClassChar> {
            let Some(c) = self.bump() else {
                return Err(self.error("missing closing ]"));
            };
            if c != '\\' {
                return Ok(ClassChar::Char(c));
            }
            let Some(e) = self.bump() else {
                return Err(self.error("trailing backslash at end of expression"));
            };
            let named = |named, negated| Ok(ClassChar::Named(Item::Named(named, negated)));
            match e {
                'd' => named(Named::Digit, false),
                'D' => named(Named::Digit, true),
                'w' => named(Named::Word, false),
                'W' => named(Named::Word, true),
                's' => named(Named::PerlSpace, false),
                'S' => named(Named::PerlSpace, true),
                e => Ok(ClassChar::Char(self.escape_char(e)?)),
            }
        }
    }

    enum ClassChar {
        Char(char),
        Named(Item),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(expression: &str) -> Filter {
        match Filter::parse(expression) {
            Ok(filter) => filter,
            Err(e) => panic!("{expression:?} should parse: {e}"),
        }
    }

    fn error(expression: &str) -> String {
        match Filter::parse(expression) {
            Ok(filter) => panic!("{expression:?} should not parse: {filter:?}"),
            Err(e) => {
                assert!(e.starts_with(ERROR_PREFIX), "{e}");
                e
            }
        }
    }

    /// The keys (map) or the `field` values (array) that `expression` keeps.
    fn kept(expression: &str, data: &Value, field: &str) -> Vec<String> {
        match apply(&filter(expression), data.clone()) {
            Value::Object(map) => map.keys().cloned().collect(),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    let mut value = item;
                    for segment in field.split('.') {
                        value = &value[segment];
                    }
                    value.as_str().unwrap_or_default().to_owned()
                })
                .collect(),
            other => panic!("unexpected {other}"),
        }
    }

    /// `/v1/agent/services`, from Consul's filtering docs.
    fn agent_services() -> Value {
        json!({
            "redis1": {
                "ID": "redis1", "Service": "redis", "Tags": ["primary", "production"],
                "Meta": {"env": "production", "foo": "bar"}, "Port": 1234, "Address": "",
                "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false
            },
            "redis2": {
                "ID": "redis2", "Service": "redis", "Tags": ["secondary", "production"],
                "Meta": {"env": "production", "foo": "bar"}, "Port": 1235, "Address": "",
                "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false
            },
            "redis3": {
                "ID": "redis3", "Service": "redis", "Tags": ["primary", "qa"],
                "Meta": {"env": "qa"}, "Port": 1234, "Address": "",
                "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false
            }
        })
    }

    /// `/v1/catalog/service/api-internal`, from Consul's filtering docs.
    fn catalog_service() -> Value {
        json!([
            {
                "ID": "b4f64e8c-5c7d-11e9-bf68-8c8590bd0966", "Node": "node-1",
                "Address": "198.18.0.1", "Datacenter": "dc1", "TaggedAddresses": null,
                "NodeMeta": {"agent": "true", "arch": "i386", "os": "darwin"},
                "ServiceKind": "", "ServiceID": "api-internal", "ServiceName": "api-internal",
                "ServiceTags": ["tag"], "ServiceAddress": "",
                "ServiceWeights": {"Passing": 1, "Warning": 1},
                "ServiceMeta": {"environment": "qa"}, "ServicePort": 9090,
                "ServiceEnableTagOverride": false, "ServiceProxy": {}, "ServiceConnect": {},
                "CreateIndex": 30, "ModifyIndex": 30
            },
            {
                "ID": "b4faf93a-5c7d-11e9-840d-8c8590bd0966", "Node": "node-2",
                "Address": "198.18.0.2", "Datacenter": "dc1", "TaggedAddresses": null,
                "NodeMeta": {"arch": "arm", "os": "linux"},
                "ServiceKind": "", "ServiceID": "api-internal", "ServiceName": "api-internal",
                "ServiceTags": ["test", "tag"], "ServiceAddress": "",
                "ServiceWeights": {"Passing": 1, "Warning": 1},
                "ServiceMeta": {"environment": "production"}, "ServicePort": 9090,
                "ServiceEnableTagOverride": false, "ServiceProxy": {}, "ServiceConnect": {},
                "CreateIndex": 29, "ModifyIndex": 29
            },
            {
                "ID": "b4fbe7f4-5c7d-11e9-ac82-8c8590bd0966", "Node": "node-4",
                "Address": "198.18.0.4", "Datacenter": "dc1", "TaggedAddresses": null,
                "NodeMeta": {"arch": "i386", "os": "freebsd"},
                "ServiceKind": "", "ServiceID": "api-internal", "ServiceName": "api-internal",
                "ServiceTags": [], "ServiceAddress": "",
                "ServiceWeights": {"Passing": 1, "Warning": 1},
                "ServiceMeta": {"environment": "qa"}, "ServicePort": 9090,
                "ServiceEnableTagOverride": false, "ServiceProxy": {}, "ServiceConnect": {},
                "CreateIndex": 28, "ModifyIndex": 28
            }
        ])
    }

    /// `/v1/health/node/node-1`, from Consul's filtering docs.
    fn health_node() -> Value {
        json!([
            {
                "Node": "node-1", "CheckID": "node-health", "Name": "Node level check",
                "Status": "critical", "Notes": "", "Output": "", "ServiceID": "",
                "ServiceName": "", "ServiceTags": [], "Definition": {},
                "CreateIndex": 13, "ModifyIndex": 13
            },
            {
                "Node": "node-1", "CheckID": "svc-web-health",
                "Name": "Service level check - web", "Status": "warning", "Notes": "",
                "Output": "", "ServiceID": "", "ServiceName": "web", "ServiceTags": [],
                "Definition": {}, "CreateIndex": 18, "ModifyIndex": 18
            }
        ])
    }

    /// `/v1/health/service/web`: Node, Service and a list of Checks per entry.
    fn health_service() -> Value {
        let check = |node: &str, id: &str, status: &str, tags: Value| {
            json!({
                "Node": node, "CheckID": id, "Name": id, "Status": status, "Notes": "",
                "Output": "", "ServiceID": "", "ServiceName": "", "ServiceTags": tags
            })
        };
        json!([
            {
                "Node": {
                    "ID": "40e4a748-2192-161a-0510-9bf59fe950b5", "Node": "node-1",
                    "Address": "10.0.0.1", "Datacenter": "dc1",
                    "TaggedAddresses": {"lan": "10.0.0.1", "wan": "198.18.0.1"},
                    "Meta": {"instance_type": "t2.medium"}
                },
                "Service": {
                    "ID": "web1", "Service": "web", "Tags": ["primary", "v1"], "Address": "",
                    "Meta": {"version": "1.2.3", "my-key": "yes"}, "Port": 8080,
                    "Weights": {"Passing": 10, "Warning": 1}, "EnableTagOverride": false
                },
                "Checks": [
                    check("node-1", "serfHealth", "passing", json!([])),
                    check("node-1", "service:web1", "passing", json!(["primary", "v1"]))
                ]
            },
            {
                "Node": {
                    "ID": "5ec8ab4a-0cb0-4e7e-a4b0-1c0b3bbd1ad5", "Node": "node-2",
                    "Address": "10.0.0.2", "Datacenter": "dc1", "TaggedAddresses": null,
                    "Meta": {"instance_type": "t2.large"}
                },
                "Service": {
                    "ID": "web2", "Service": "web", "Tags": ["secondary"], "Address": "10.1.0.2",
                    "Meta": {"version": "2.0.0"}, "Port": 8081,
                    "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": true
                },
                "Checks": [
                    check("node-2", "serfHealth", "passing", json!([])),
                    check("node-2", "service:web2", "critical", json!(["secondary"]))
                ]
            },
            {
                "Node": {
                    "ID": "b3f6e6c0-8e0b-4fa2-9a57-7d1f1c5c4b22", "Node": "node-3",
                    "Address": "10.0.0.3", "Datacenter": "dc1", "TaggedAddresses": {},
                    "Meta": {}
                },
                "Service": {
                    "ID": "web3", "Service": "web", "Tags": [], "Address": "",
                    "Meta": {}, "Port": 8082,
                    "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false
                },
                "Checks": []
            }
        ])
    }

    #[test]
    fn docs_agent_example_meta_env_qa() {
        assert_eq!(
            kept(r#"Meta.env == "qa""#, &agent_services(), ""),
            ["redis3"]
        );
        let filtered = apply(&filter(r#"Meta.env == "qa""#), agent_services());
        assert_eq!(
            filtered,
            json!({ "redis3": agent_services()["redis3"].clone() })
        );
    }

    #[test]
    fn docs_catalog_example_node_meta_os() {
        let data = catalog_service();
        assert_eq!(kept(r#"NodeMeta.os == "linux""#, &data, "Node"), ["node-2"]);
        assert_eq!(
            kept(r#"NodeMeta.os != "linux""#, &data, "Node"),
            ["node-1", "node-4"]
        );
    }

    #[test]
    fn docs_health_node_example_service_name_not_empty() {
        let data = health_node();
        assert_eq!(
            kept(r#"ServiceName != """#, &data, "CheckID"),
            ["svc-web-health"]
        );
        assert_eq!(
            kept("ServiceName is not empty", &data, "CheckID"),
            ["svc-web-health"]
        );
        assert_eq!(
            kept("ServiceName is empty", &data, "CheckID"),
            ["node-health"]
        );
    }

    #[test]
    fn docs_operator_forms_all_parse() {
        for expression in [
            r#"Meta.env == "qa""#,
            r#"Meta.env != "qa""#,
            "Meta.env is empty",
            "Meta.env is not empty",
            r#""qa" in Meta.env"#,
            r#""qa" not in Meta.env"#,
            r#"Meta.env contains "qa""#,
            r#"Meta.env not contains "qa""#,
            r#"Meta.env matches "q.""#,
            r#"Meta.env not matches "q.""#,
            "ServiceMeta.foo == bar",
            r#"ServiceMeta["foo"] == bar"#,
            "Port == 1234 and not Meta.env == qa or Tags is empty",
            "( Port == 1234 and ( not Meta.env == qa ) ) or Tags is empty",
            "  (Port==1234)  ",
        ] {
            filter(expression);
        }
    }

    #[test]
    fn equality_with_bare_quoted_and_raw_values() {
        let data = agent_services();
        for expression in [
            "Meta.env == qa",
            r#"Meta.env == "qa""#,
            "Meta.env == `qa`",
            r#"Meta["env"] == qa"#,
            "Meta[`env`] == qa",
            r#"Meta[ "env" ] == qa"#,
        ] {
            assert_eq!(kept(expression, &data, ""), ["redis3"], "{expression}");
        }
        assert_eq!(kept("Meta.env != qa", &data, ""), ["redis1", "redis2"]);
    }

    #[test]
    fn in_and_contains_on_lists() {
        let data = agent_services();
        for expression in [
            "primary in Tags",
            r#""primary" in Tags"#,
            "Tags contains primary",
            "Tags contains `primary`",
        ] {
            assert_eq!(
                kept(expression, &data, ""),
                ["redis1", "redis3"],
                "{expression}"
            );
        }
        assert_eq!(kept("primary not in Tags", &data, ""), ["redis2"]);
        assert_eq!(kept("Tags not contains primary", &data, ""), ["redis2"]);
        // Element equality, not substring.
        assert!(kept("prim in Tags", &data, "").is_empty());
    }

    #[test]
    fn in_and_contains_on_maps_test_keys() {
        let data = agent_services();
        assert_eq!(kept("foo in Meta", &data, ""), ["redis1", "redis2"]);
        assert_eq!(kept("Meta contains foo", &data, ""), ["redis1", "redis2"]);
        assert_eq!(kept("foo not in Meta", &data, ""), ["redis3"]);
        // Values are not keys.
        assert!(kept("bar in Meta", &data, "").is_empty());
    }

    #[test]
    fn in_and_contains_on_strings_are_substring() {
        let data = agent_services();
        assert_eq!(kept("Service contains edi", &data, "").len(), 3);
        assert_eq!(kept(r#""dis" in Service"#, &data, "").len(), 3);
        assert_eq!(kept("ID contains 3", &data, ""), ["redis3"]);
        assert_eq!(kept("ID not contains 3", &data, ""), ["redis1", "redis2"]);
        assert_eq!(kept(r#""" in ID"#, &data, "").len(), 3);
    }

    #[test]
    fn emptiness_of_strings_lists_maps_null_and_missing() {
        let data = catalog_service();
        assert_eq!(kept("ServiceTags is empty", &data, "Node"), ["node-4"]);
        assert_eq!(
            kept("ServiceTags is not empty", &data, "Node"),
            ["node-1", "node-2"]
        );
        assert_eq!(kept("ServiceAddress is empty", &data, "Node").len(), 3);
        assert_eq!(kept("ServiceProxy is empty", &data, "Node").len(), 3);
        assert_eq!(kept("NodeMeta is not empty", &data, "Node").len(), 3);
        // TaggedAddresses is null: empty.
        assert_eq!(kept("TaggedAddresses is empty", &data, "Node").len(), 3);
        // A missing map key is empty.
        assert_eq!(
            kept("NodeMeta.agent is empty", &data, "Node"),
            ["node-2", "node-4"]
        );
        assert_eq!(
            kept("NodeMeta.agent is not empty", &data, "Node"),
            ["node-1"]
        );
        // Numbers have no emptiness: false either way.
        assert!(kept("ServicePort is empty", &data, "Node").is_empty());
        assert!(kept("ServicePort is not empty", &data, "Node").is_empty());
    }

    #[test]
    fn missing_keys_follow_bexpr_not_present_rule() {
        let data = agent_services();
        assert_eq!(kept("Meta.foo == bar", &data, "").len(), 2);
        assert_eq!(kept("Meta.foo != bar", &data, ""), ["redis3"]);
        assert!(kept("Meta.nope == x", &data, "").is_empty());
        assert_eq!(kept("Meta.nope != x", &data, "").len(), 3);
        assert!(kept("x in Meta.nope", &data, "").is_empty());
        assert_eq!(kept("x not in Meta.nope", &data, "").len(), 3);
        assert!(kept("Meta.nope matches x", &data, "").is_empty());
        assert_eq!(kept("Meta.nope not matches x", &data, "").len(), 3);
        // An unknown top-level field is treated the same way (Consul would answer 400).
        assert!(kept("Servce == redis", &data, "").is_empty());
        assert_eq!(kept("Servce is empty", &data, "").len(), 3);
        // Descending into a scalar never matches, negated or not.
        assert!(kept("Service.Name == redis", &data, "").is_empty());
        assert!(kept("Service.Name != redis", &data, "").is_empty());
        assert!(kept("Port.x is empty", &data, "").is_empty());
    }

    #[test]
    fn numbers_compare_numerically() {
        let data = agent_services();
        for expression in [
            "Port == 1234",
            r#"Port == "1234""#,
            "Port == `1234`",
            r#"Port == "0x4d2""#,
            r#"Port == "+1234""#,
            "Port == 1234.0",
        ] {
            assert_eq!(
                kept(expression, &data, ""),
                ["redis1", "redis3"],
                "{expression}"
            );
        }
        assert_eq!(kept("Port != 1234", &data, ""), ["redis2"]);
        assert_eq!(kept("Weights.Passing == 1", &data, "").len(), 3);
        // Text that is not a number matches nothing, negated or not (Consul: 400).
        assert!(kept("Port == abc", &data, "").is_empty());
        assert!(kept("Port != abc", &data, "").is_empty());
        // Numbers are not substrings of numbers.
        assert!(kept("Port contains 12", &data, "").is_empty());
        assert!(kept("Port not contains 12", &data, "").is_empty());
        // A number literal against a string field is text.
        let item = json!({"Name": "1234", "Neg": -5, "F": 0.5, "Big": u64::MAX});
        assert!(filter("Name == 1234").matches(&item));
        assert!(!filter("Name == 1234.0").matches(&item));
        assert!(filter("Neg == -5").matches(&item));
        assert!(filter("F == 0.5").matches(&item));
        assert!(filter(r#"F == "5e-1""#).matches(&item));
        assert!(filter(r#"Big == "18446744073709551615""#).matches(&item));
        assert!(!filter(r#"Big == "18446744073709551614""#).matches(&item));
    }

    #[test]
    fn booleans_use_go_parse_bool() {
        let data = health_service();
        for expression in [
            "Service.EnableTagOverride == true",
            "Service.EnableTagOverride == True",
            "Service.EnableTagOverride == T",
            "Service.EnableTagOverride == 1",
            r#"Service.EnableTagOverride == "TRUE""#,
            "Service.EnableTagOverride != false",
        ] {
            assert_eq!(
                kept(expression, &data, "Service.ID"),
                ["web2"],
                "{expression}"
            );
        }
        assert_eq!(
            kept("Service.EnableTagOverride == false", &data, "Service.ID"),
            ["web1", "web3"]
        );
        assert!(kept("Service.EnableTagOverride == yes", &data, "Service.ID").is_empty());
        assert!(kept("Service.EnableTagOverride != yes", &data, "Service.ID").is_empty());
    }

    #[test]
    fn index_selectors_reach_keys_with_special_characters() {
        let data = health_service();
        assert_eq!(
            kept(r#"Service.Meta["my-key"] == yes"#, &data, "Service.ID"),
            ["web1"]
        );
        assert_eq!(
            kept(r#""my-key" in Service.Meta"#, &data, "Service.ID"),
            ["web1"]
        );
        assert_eq!(
            kept(r#"Service.Meta["my-key"] is empty"#, &data, "Service.ID"),
            ["web2", "web3"]
        );
        assert_eq!(
            kept("Service.Meta.version == `1.2.3`", &data, "Service.ID"),
            ["web1"]
        );
        // A bare selector-shaped value keeps its dots and digits.
        assert_eq!(
            kept("Service.Meta.version == v1.2.3", &data, "Service.ID"),
            Vec::<String>::new()
        );
        let item = json!({"Meta": {"v": "v1.2.3", "2": "two", "a b": "c"}});
        assert!(filter("Meta.v == v1.2.3").matches(&item));
        assert!(filter("Meta.2 == two").matches(&item));
        assert!(filter(r#"Meta["a b"] == c"#).matches(&item));
        assert!(filter(r#"Meta["a b"] == Meta.x"#).matches(&json!({"Meta": {"a b": "Meta.x"}})));
    }

    #[test]
    fn selectors_through_lists_of_objects_are_any() {
        let data = health_service();
        assert_eq!(
            kept("Checks.Status == critical", &data, "Service.ID"),
            ["web2"]
        );
        assert_eq!(
            kept("Checks.Status == passing", &data, "Service.ID"),
            ["web1", "web2"]
        );
        // Per element, like bexpr: "some check is not passing".
        assert_eq!(
            kept("Checks.Status != passing", &data, "Service.ID"),
            ["web2"]
        );
        // "No check is critical" includes the entry without checks.
        assert_eq!(
            kept("not Checks.Status == critical", &data, "Service.ID"),
            ["web1", "web3"]
        );
        assert_eq!(
            kept("Checks.ServiceTags contains primary", &data, "Service.ID"),
            ["web1"]
        );
        assert_eq!(
            kept("primary in Checks.ServiceTags", &data, "Service.ID"),
            ["web1"]
        );
        assert_eq!(
            kept("Checks.CheckID matches `^service:`", &data, "Service.ID"),
            ["web1", "web2"]
        );
        assert_eq!(
            kept("Checks.ServiceTags is empty", &data, "Service.ID"),
            ["web1", "web2"]
        );
        // An empty list matches nothing, whatever the operator.
        for expression in [
            "Checks.Status is empty",
            "Checks.Status != x",
            "x not in Checks.ServiceTags",
        ] {
            assert!(
                !kept(expression, &data, "Service.ID").contains(&"web3".to_owned()),
                "{expression}"
            );
        }
    }

    #[test]
    fn equality_and_matches_on_a_list_apply_to_its_elements() {
        let data = health_service();
        assert_eq!(
            kept("Service.Tags == primary", &data, "Service.ID"),
            ["web1"]
        );
        assert_eq!(
            kept("Service.Tags matches `^sec`", &data, "Service.ID"),
            ["web2"]
        );
        assert_eq!(
            kept("Service.Tags != primary", &data, "Service.ID"),
            ["web1", "web2"]
        );
    }

    #[test]
    fn health_service_node_and_service_fields() {
        let data = health_service();
        assert_eq!(
            kept(r#"Node.Node == "node-2""#, &data, "Service.ID"),
            ["web2"]
        );
        assert_eq!(
            kept(
                "Node.Meta.instance_type == `t2.medium`",
                &data,
                "Service.ID"
            ),
            ["web1"]
        );
        assert_eq!(
            kept("lan in Node.TaggedAddresses", &data, "Service.ID"),
            ["web1"]
        );
        assert_eq!(
            kept("Node.TaggedAddresses is empty", &data, "Service.ID"),
            ["web2", "web3"]
        );
        assert_eq!(
            kept("Service.Weights.Passing == 10", &data, "Service.ID"),
            ["web1"]
        );
        assert_eq!(
            kept(
                "Service.Service == web and (Service.Port == 8081 or Service.Port == 8082)",
                &data,
                "Service.ID"
            ),
            ["web2", "web3"]
        );
    }

    #[test]
    fn logic_precedence_and_grouping() {
        let item = json!({"A": "1", "B": "1", "C": "0"});
        // `A and not B or C` is `(A and (not B)) or C`.
        assert!(!filter("A == 1 and not B == 1 or C == 1").matches(&item));
        assert!(filter("A == 1 and not B == 0 or C == 1").matches(&item));
        assert!(filter("C == 1 or A == 1 and B == 1").matches(&item));
        assert!(!filter("(C == 1 or A == 1) and B == 0").matches(&item));
        assert!(filter("not not A == 1").matches(&item));
        assert!(!filter("not (A == 1)").matches(&item));
        assert!(filter("not (A == 1 and C == 1)").matches(&item));
        assert!(filter("((((A == 1))))").matches(&item));
        assert!(filter("A == 1 and B == 1 and C == 0 and not C == 1").matches(&item));
        assert!(filter("A==1 and\n\tB==1").matches(&item));
    }

    #[test]
    fn keywords_are_lower_case_and_need_whitespace() {
        let item = json!({"notes": "", "Name": "orange", "not": "x", "in": "y"});
        assert!(filter("notes is empty").matches(&item));
        assert!(filter("Name == orange or Name == order").matches(&item));
        assert!(filter("Name == orange and Name != andy").matches(&item));
        // A field called `not` or `in` is still a selector where a keyword cannot be.
        assert!(filter("not == x").matches(&item));
        assert!(filter("in == y").matches(&item));
        for bad in [
            "Name == orange AND Name == orange",
            "Name == orange OR Name == orange",
            "NOT Name == orange",
            "Name IS EMPTY",
            "Name == orange and(Name == orange)",
            "not(Name == orange)",
            "Name contains\"x\"",
            "x in(Tags)",
        ] {
            error(bad);
        }
    }

    #[test]
    fn regex_matches() {
        let data = agent_services();
        assert_eq!(
            kept("ID matches `^redis[12]$`", &data, ""),
            ["redis1", "redis2"]
        );
        assert_eq!(kept(r#"ID matches "3$""#, &data, ""), ["redis3"]);
        assert_eq!(
            kept(r#"ID not matches "3$""#, &data, ""),
            ["redis1", "redis2"]
        );
        assert_eq!(kept("Service matches edi", &data, "").len(), 3);
        assert_eq!(kept("Meta.env matches `(?i)^QA$`", &data, ""), ["redis3"]);
        assert_eq!(kept(r#"ID matches "redis\\d""#, &data, "").len(), 3);
        // Not applicable to numbers: false either way.
        assert!(kept("Port matches 1", &data, "").is_empty());
        assert!(kept("Port not matches 1", &data, "").is_empty());
    }

    #[test]
    fn regex_engine_subset() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "abc", true),
            ("abc", "xxabcxx", true),
            ("abc", "ab", false),
            ("^abc", "xabc", false),
            ("abc$", "abcx", false),
            ("^$", "", true),
            ("a.c", "abc", true),
            ("a.c", "a\nc", false),
            ("(?s)a.c", "a\nc", true),
            ("a*", "", true),
            ("^a+$", "aaa", true),
            ("^a+$", "", false),
            ("^ab?c$", "ac", true),
            ("^ab?c$", "abbc", false),
            ("^a{2}$", "aa", true),
            ("^a{2}$", "aaa", false),
            ("^a{2,}$", "aaaa", true),
            ("^a{2,3}$", "aaaa", false),
            ("^a{0,1}b$", "b", true),
            ("^a{,2}$", "a{,2}", true),
            ("^x{$", "x{", true),
            ("^(ab)+$", "ababab", true),
            ("^(ab)+$", "ababa", false),
            ("^(?:a|bc)+$", "abca", true),
            ("^(?P<x>a|b)c$", "bc", true),
            ("^(?<x>a|b)c$", "ac", true),
            ("^(cat|dog|)$", "", true),
            ("cat|dog", "hotdog", true),
            ("^[a-c]+$", "abcab", true),
            ("^[a-c]+$", "abd", false),
            ("^[^a-c]+$", "xyz", true),
            ("^[^a-c]+$", "xaz", false),
            ("^[]a]+$", "]a]", true),
            ("^[a-]+$", "a-a", true),
            ("^[\\d.]+$", "1.2.3", true),
            ("^[[:alpha:]]+$", "abcXYZ", true),
            ("^[[:^digit:]]+$", "abc", true),
            ("^[[:^digit:]]+$", "ab1", false),
            ("^\\d+$", "12345", true),
            ("^\\D+$", "12a", false),
            ("^\\w+$", "ab_9", true),
            ("^\\W$", "-", true),
            ("^a\\sb$", "a\tb", true),
            ("^\\S+$", "a b", false),
            ("\\bfoo\\b", "a foo b", true),
            ("\\bfoo\\b", "afoob", false),
            ("\\Bfoo", "afoo", true),
            ("\\Afoo\\z", "foo", true),
            ("(?m)^b$", "a\nb\nc", true),
            ("^b$", "a\nb\nc", false),
            ("(?i)hello", "HeLLo world", true),
            ("(?i:h)ello", "Hello", true),
            ("(?i:h)ello", "HELLO", false),
            ("h(?i)ELLO", "hello", true),
            ("(?i)[a-c]+", "ABC", true),
            ("(?i)[^a]", "A", false),
            ("(?i-i)A", "a", false),
            ("^\\.\\*\\+$", ".*+", true),
            ("^\\x41\\x{42}\\103$", "ABC", true),
            ("^\\Q.*\\E$", ".*", true),
            ("^\\t\\n$", "\t\n", true),
            ("^é+$", "ééé", true),
            ("^.$", "é", true),
            ("a*?b", "aab", true),
            ("^(a*)*$", "aaaa", true),
            (
                "^(a|aa)*b$",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac",
                false,
            ),
            (
                "^(a+)+$",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
                false,
            ),
            ("^()*$", "", true),
            ("(?U)a+", "a", true),
        ];
        for (pattern, text, want) in cases {
            let re = match re::Regex::new(pattern) {
                Ok(re) => re,
                Err(e) => panic!("{pattern:?}: {e}"),
            };
            assert_eq!(re.is_match(text), *want, "{pattern:?} on {text:?}");
        }
    }

    #[test]
    fn regex_errors_are_parse_errors() {
        for pattern in [
            "(abc",
            "abc)",
            "a**",
            "a+*",
            "*a",
            "+",
            "{2}",
            "[a",
            "[z-a]",
            "x{1001}",
            "x{3,2}",
            "\\1",
            "\\q",
            "\\",
            "\\pL",
            "\\p{Greek}",
            "(?x)a",
            "(?P<>a)",
            "(?",
            "[[:nope:]]",
            "[a-\\d]",
            "(?i",
            "(?-)",
        ] {
            assert!(
                re::Regex::new(pattern).is_err(),
                "{pattern:?} should not compile"
            );
            let e = error(&format!("Name matches `{pattern}`"));
            assert!(
                e.contains("Failed to compile regular expression"),
                "{pattern:?}: {e}"
            );
        }
        let e = error("Name matches `(abc`");
        assert_eq!(
            e,
            "Failed to create boolean expression evaluator: Failed to compile regular \
             expression \"(abc\": error parsing regexp: missing closing ): `(abc`"
        );
    }

    #[test]
    fn regex_size_is_bounded() {
        assert!(re::Regex::new("(((a{1000}){1000}){1000})").is_err());
        assert!(re::Regex::new(&"(".repeat(200)).is_err());
        let re = re::Regex::new("(x+x+)+y").expect("compiles");
        assert!(!re.is_match(&"x".repeat(5000)));
    }

    #[test]
    fn string_literals_and_escapes() {
        let item = json!({"S": "a\tb", "U": "é", "R": "a\\nb", "Q": "say \"hi\"", "E": ""});
        assert!(filter(r#"S == "a\tb""#).matches(&item));
        assert!(filter(r#"S == "a\x09b""#).matches(&item));
        assert!(filter(r#"S == "a\011b""#).matches(&item));
        assert!(filter(r#"U == "\u00e9""#).matches(&item));
        assert!(filter(r#"U == "\U000000e9""#).matches(&item));
        assert!(filter(r#"U == "\xc3\xa9""#).matches(&item));
        assert!(filter("U == \"é\"").matches(&item));
        // Raw strings keep backslashes.
        assert!(filter(r"R == `a\nb`").matches(&item));
        assert!(filter("R == `a\\nb`").matches(&item));
        // Escaped quotes (an extension: bexpr rejects them).
        assert!(filter(r#"Q == "say \"hi\"""#).matches(&item));
        assert!(filter("Q == `say \"hi\"`").matches(&item));
        assert!(filter(r#"E == """#).matches(&item));
        assert!(filter("E == ``").matches(&item));
        // Carriage returns are dropped from raw strings, as Go does.
        assert!(filter("S == `a\t\rb`").matches(&item));
        for bad in [
            r#"S == "\q""#,
            r#"S == "\'""#,
            r#"S == "\x4""#,
            r#"S == "\400""#,
            r#"S == "\ud800""#,
            r#"S == "\xff""#,
            "S == \"a\nb\"",
        ] {
            let e = error(bad);
            assert!(e.contains("rule string"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            (
                "(Name == web",
                "1:13 (12): rule grouping: Unmatched parentheses",
            ),
            (
                "Name == \"web",
                "1:13 (12): rule string: Unterminated string literal",
            ),
            (
                "Name == `web",
                "1:13 (12): rule string: Unterminated string literal",
            ),
            (
                "Port == 12ab",
                "1:11 (10): rule number: Invalid number literal",
            ),
            (
                "Port == 1.",
                "1:10 (9): rule number: Invalid number literal",
            ),
            (
                "Port == 01",
                "1:10 (9): rule number: Invalid number literal",
            ),
            ("web in \"Tags\"", "1:8 (7): rule match: Invalid selector"),
            ("Meta[env] == x", "1:6 (5): rule index: Invalid index"),
            (
                "Meta[\"env\" == x",
                "1:12 (11): rule index: Unclosed index expression",
            ),
        ];
        for (expression, want) in cases {
            assert_eq!(
                error(expression),
                format!("{ERROR_PREFIX}{want}"),
                "{expression}"
            );
        }
        let e = error("Name = web");
        assert!(
            e.starts_with(&format!(
                "{ERROR_PREFIX}1:6 (5): no match found, expected: "
            )),
            "{e}"
        );
        assert!(e.contains("\"==\""), "{e}");
        let e = error("Name == web and\nPort ==");
        assert!(e.contains("2:8 (23): no match found"), "{e}");
    }

    #[test]
    fn bad_expressions_are_rejected() {
        for bad in [
            " ",
            "Name",
            "Name ==",
            "== web",
            "Name == web)",
            "Name == web and",
            "Name == web or or Name == x",
            "and Name == web",
            "not",
            "()",
            "Name is",
            "Name is not",
            "Name is emptyish",
            "Name isempty",
            "Name == web web",
            "1Name == web",
            "Name. == web",
            "Name.[\"x\"] == web",
            "Name == -",
            "Name == node-1",
            "Name == 'web'",
            "Name ~= web",
            "\"x\" == Name",
            "Name == \"/\"x",
            "Nam€ == x",
            "Name == w€b",
            "\"/Service/Name\" == web",
        ] {
            error(bad);
        }
    }

    #[test]
    fn limits_on_size_and_nesting() {
        let long = format!("Name == \"{}\"", "x".repeat(MAX_EXPRESSION_BYTES));
        assert!(error(&long).contains("the limit is 4096"));

        let deep_ok = format!(
            "{}Name == x{}",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert!(filter(&deep_ok).matches(&json!({"Name": "x"})));
        let too_deep = format!(
            "{}Name == x{}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        assert!(error(&too_deep).contains("nests deeper than 32 levels"));
        let nots = format!("{}Name == x", "not ".repeat(MAX_NESTING + 1));
        assert!(error(&nots).contains("nests deeper"));
        let nots = format!("{}Name == x", "not ".repeat(MAX_NESTING));
        assert!(filter(&nots).matches(&json!({"Name": "x"})));
        let unbalanced = "(".repeat(MAX_EXPRESSION_BYTES);
        error(&unbalanced);

        // A long flat chain is fine: it is parsed iteratively.
        let mut chain = String::from("A == 1");
        while chain.len() + 16 < MAX_EXPRESSION_BYTES {
            chain.push_str(" and A == 1 or B == 2");
        }
        assert!(filter(&chain).matches(&json!({"A": "1"})));
    }

    #[test]
    fn empty_expression_matches_everything() {
        let f = filter("");
        assert!(f.matches(&json!({})));
        assert_eq!(apply(&f, agent_services()), agent_services());
        assert_eq!(apply(&f, catalog_service()), catalog_service());
    }

    #[test]
    fn apply_leaves_other_values_alone() {
        let f = filter("Name == x");
        assert_eq!(apply(&f, json!("text")), json!("text"));
        assert_eq!(apply(&f, json!(null)), json!(null));
        assert_eq!(apply(&f, json!([1, "x", null])), json!([]));
        assert_eq!(
            apply(&f, json!([{"Name": "x"}, {"Name": "y"}])),
            json!([{"Name": "x"}])
        );
    }

    #[test]
    fn filters_compare_and_clone() {
        let a = filter("Name matches `^w` and web in Tags");
        assert_eq!(a, a.clone());
        assert_ne!(a, filter("Name matches `^x` and web in Tags"));
        assert_eq!(filter("not not Name == x"), filter("Name == x"));
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        let pieces = [
            "Name", " ", "==", "!=", "\"", "`", "(", ")", "[", "]", ".", "and", "or", "not", "in",
            "is", "empty", "contains", "matches", "-", "1", "0.5", "é", "\\", "\n", "x", "Meta",
            "Checks", "Status", "\\u", "(?", "*", "{", "}", "$", "^", "|", ":",
        ];
        let data = health_service();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..4000 {
            let mut expression = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 12) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                expression.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            if let Ok(f) = Filter::parse(&expression) {
                let _ = apply(&f, data.clone());
            }
        }
        // Every prefix of some valid expressions.
        for full in [
            r#"Service.Meta["my-key"] == "a\tb" and not (Checks.Status matches `^(?i)pass` or x in Tags)"#,
            "Name == `é` or 1.5 not in Ports",
        ] {
            for (i, _) in full.char_indices() {
                let _ = Filter::parse(&full[..i]).map(|f| f.matches(&data[0]));
            }
        }
    }

    #[test]
    fn empty_groups_repeated_cannot_hang_the_compiler() {
        // Without the compile budget these ran for hours (10^12 empty repetitions).
        for pattern in [
            r#"Node matches "((((){1000}){1000}){1000}){1000}""#,
            r#"Node matches "(((?:){1000}){1000}){1000}""#,
            r#"Node matches "(((x){0}){1000}){1000}""#,
        ] {
            let error = Filter::parse(pattern).err().unwrap_or_default();
            assert!(error.contains("expression too large"), "{pattern}: {error}");
        }
    }

    #[test]
    fn selectors_outside_the_endpoint_are_refused() {
        let allowed = ["Node", "Meta", "Meta.*", "Checks.Status"];
        let check = |expression: &str| {
            Filter::parse(expression)
                .and_then(|f| f.check_selectors(&allowed))
                .err()
        };
        assert_eq!(
            check("Node == a and Meta.rack == r1 or Checks.Status != passing"),
            None
        );
        assert_eq!(check("not (Meta is empty)"), None);
        assert_eq!(
            check("Node == a and Nod == b").as_deref(),
            Some(r#"Failed to create boolean expression evaluator: Selector "Nod" is not valid"#)
        );
        assert!(check("Checks.Output == x").is_some());
        assert!(check("Meta.a.b == x").is_some());
    }
}
