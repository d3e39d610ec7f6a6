//! A small RE2-subset regular expression engine for `matches`: a parser to an AST, a compiler
//! to a Thompson program and a Pike VM that answers "is there a match anywhere" in time linear
//! in the text. Only match/no-match is needed, so captures and greediness are irrelevant.

mod parse;

/// RE2's largest repetition count.
const MAX_REPEAT: u32 = 1000;
/// The largest compiled program.
const MAX_INSTRUCTIONS: usize = 10_000;
/// How deeply groups may nest.
const MAX_GROUP_DEPTH: usize = 100;

type Result<T> = std::result::Result<T, String>;

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Regex {
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
            || (self.fold && (self.contains(simple_lower(c)) || self.contains(simple_upper(c))));
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
    pub(crate) fn new(pattern: &str) -> Result<Regex> {
        let node = parse::parse(pattern)?;
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
    pub(crate) fn is_match(&self, text: &str) -> bool {
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
    fn add(&self, list: &mut Threads, stack: &mut Vec<usize>, pc: usize, text: &[char], at: usize) {
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
