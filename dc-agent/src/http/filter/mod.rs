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
    Matches(Box<regex::Regex>),
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
                let re = regex::Regex::new(source)
                    .map_err(|e| format!("Failed to compile regular expression {source:?}: {e}"))?;
                m.op = Op::Matches(Box::new(re));
            }
            Ok(())
        }
    }
}

mod parse;
pub(crate) mod regex;
#[cfg(test)]
mod tests;

use parse::Parser;
