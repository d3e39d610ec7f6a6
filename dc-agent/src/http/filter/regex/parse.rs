//! The pattern parser: RE2's syntax (the subset this engine runs) to an AST.

use super::*;

/// Parses `pattern` to its AST.
pub(super) fn parse(pattern: &str) -> Result<Node> {
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
    Ok(node)
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
            '*' | '+' | '?' => return Err(self.error("missing argument to repetition operator")),
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
            'p' | 'P' => {
                return Err(self.error(
                    "Unicode class escapes are not supported by this filter's regular expressions",
                ))
            }
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
