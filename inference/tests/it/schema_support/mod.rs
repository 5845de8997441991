//! A small GBNF interpreter for the schema tests: parses the grammars
//! `troupe_inference::schema` writes (one rule per line), refuses undefined
//! rules and left recursion (as llama.cpp does), samples random strings from
//! a grammar, and recognises whether a string is in it. It lets the tests
//! check grammars without a model.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One GBNF expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Lit(Vec<char>),
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Ref(String),
    Seq(Vec<Expr>),
    Alt(Vec<Expr>),
    Rep(Box<Expr>, u64, Option<u64>),
}

/// A parsed grammar.
#[derive(Debug)]
pub(crate) struct Grammar {
    rules: HashMap<String, Expr>,
    cost: HashMap<String, u32>,
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    line: &'a str,
}

impl Parser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at column {} of `{}`", self.pos, self.line))
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
            self.pos += 1;
        }
    }

    fn escaped(&mut self) -> Result<char, String> {
        let Some(c) = self.peek() else {
            return self.err("unfinished literal");
        };
        self.pos += 1;
        if c != '\\' {
            return Ok(c);
        }
        let Some(e) = self.peek() else {
            return self.err("unfinished escape");
        };
        self.pos += 1;
        let hex = |p: &mut Self, n: usize| -> Result<char, String> {
            let text: String = p
                .chars
                .get(p.pos..p.pos + n)
                .map(|s| s.iter().collect())
                .unwrap_or_default();
            p.pos += n;
            u32::from_str_radix(&text, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad hex escape {text}"))
        };
        match e {
            'x' => hex(self, 2),
            'u' => hex(self, 4),
            'U' => hex(self, 8),
            't' => Ok('\t'),
            'r' => Ok('\r'),
            'n' => Ok('\n'),
            '\\' | '"' | '[' | ']' | '-' => Ok(e),
            _ => self.err("unknown escape"),
        }
    }

    fn alt(&mut self) -> Result<Expr, String> {
        let mut alts = vec![self.seq()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.seq()?);
        }
        Ok(if alts.len() == 1 {
            alts.remove(0)
        } else {
            Expr::Alt(alts)
        })
    }

    fn seq(&mut self) -> Result<Expr, String> {
        let mut items = Vec::new();
        loop {
            self.skip_space();
            let item = match self.peek() {
                None | Some('|') | Some(')') => return Ok(Expr::Seq(items)),
                Some('"') => {
                    self.pos += 1;
                    let mut text = Vec::new();
                    while self.peek() != Some('"') {
                        text.push(self.escaped()?);
                    }
                    self.pos += 1;
                    Expr::Lit(text)
                }
                Some('[') => {
                    self.pos += 1;
                    let negated = self.peek() == Some('^');
                    if negated {
                        self.pos += 1;
                    }
                    let mut ranges = Vec::new();
                    while self.peek() != Some(']') {
                        let lo = self.escaped()?;
                        let hi = if self.peek() == Some('-')
                            && self.chars.get(self.pos + 1) != Some(&']')
                        {
                            self.pos += 1;
                            self.escaped()?
                        } else {
                            lo
                        };
                        ranges.push((lo, hi));
                    }
                    self.pos += 1;
                    Expr::Class { negated, ranges }
                }
                Some('(') => {
                    self.pos += 1;
                    let inner = self.alt()?;
                    self.skip_space();
                    if self.peek() != Some(')') {
                        return self.err("expected )");
                    }
                    self.pos += 1;
                    inner
                }
                Some(c) if c.is_ascii_alphanumeric() || c == '-' => {
                    let start = self.pos;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                    {
                        self.pos += 1;
                    }
                    Expr::Ref(self.chars[start..self.pos].iter().collect())
                }
                Some(_) => return self.err("unexpected character"),
            };
            items.push(self.postfix(item)?);
        }
    }

    fn number(&mut self) -> Result<u64, String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse()
            .map_err(|_| format!("bad count in `{}`", self.line))
    }

    fn postfix(&mut self, mut item: Expr) -> Result<Expr, String> {
        loop {
            item = match self.peek() {
                Some('*') => Expr::Rep(Box::new(item), 0, None),
                Some('+') => Expr::Rep(Box::new(item), 1, None),
                Some('?') => Expr::Rep(Box::new(item), 0, Some(1)),
                Some('{') => {
                    self.pos += 1;
                    let min = self.number()?;
                    let max = match self.peek() {
                        Some('}') => Some(min),
                        Some(',') if self.chars.get(self.pos + 1) == Some(&'}') => {
                            self.pos += 1;
                            None
                        }
                        Some(',') => {
                            self.pos += 1;
                            Some(self.number()?)
                        }
                        _ => return self.err("bad repetition"),
                    };
                    if self.peek() != Some('}') {
                        return self.err("expected }");
                    }
                    Expr::Rep(Box::new(item), min, max)
                }
                _ => return Ok(item),
            };
            self.pos += 1;
        }
    }
}

fn refs(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Ref(name) => out.push(name.clone()),
        Expr::Seq(items) | Expr::Alt(items) => items.iter().for_each(|e| refs(e, out)),
        Expr::Rep(inner, _, _) => refs(inner, out),
        Expr::Lit(_) | Expr::Class { .. } => {}
    }
}

impl Grammar {
    /// Parses `text`, checking that every rule is defined once, `root`
    /// exists, and no rule is left-recursive.
    pub(crate) fn parse(text: &str) -> Result<Grammar, String> {
        let mut rules = HashMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (name, body) = line
                .split_once(" ::= ")
                .ok_or_else(|| format!("not a rule: `{line}`"))?;
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad rule name `{name}`"));
            }
            let mut parser = Parser {
                chars: body.chars().collect(),
                pos: 0,
                line,
            };
            let expr = parser.alt()?;
            if parser.pos != parser.chars.len() {
                return parser.err("trailing text");
            }
            if rules.insert(name.to_owned(), expr).is_some() {
                return Err(format!("rule `{name}` defined twice"));
            }
        }
        if !rules.contains_key("root") {
            return Err("no root rule".into());
        }
        for expr in rules.values() {
            let mut names = Vec::new();
            refs(expr, &mut names);
            if let Some(missing) = names.iter().find(|n| !rules.contains_key(*n)) {
                return Err(format!("undefined rule `{missing}`"));
            }
        }
        let mut grammar = Grammar {
            rules,
            cost: HashMap::new(),
        };
        grammar.check_left_recursion()?;
        grammar.compute_costs();
        Ok(grammar)
    }

    fn nullable(&self, expr: &Expr, nullable: &HashMap<String, bool>) -> bool {
        match expr {
            Expr::Lit(text) => text.is_empty(),
            Expr::Class { .. } => false,
            Expr::Ref(name) => nullable[name],
            Expr::Seq(items) => items.iter().all(|e| self.nullable(e, nullable)),
            Expr::Alt(items) => items.iter().any(|e| self.nullable(e, nullable)),
            Expr::Rep(inner, min, max) => {
                *min == 0 || *max == Some(0) || self.nullable(inner, nullable)
            }
        }
    }

    fn leftmost(&self, expr: &Expr, nullable: &HashMap<String, bool>, out: &mut Vec<String>) {
        match expr {
            Expr::Ref(name) => out.push(name.clone()),
            Expr::Seq(items) => {
                for item in items {
                    self.leftmost(item, nullable, out);
                    if !self.nullable(item, nullable) {
                        break;
                    }
                }
            }
            Expr::Alt(items) => items.iter().for_each(|e| self.leftmost(e, nullable, out)),
            Expr::Rep(inner, _, _) => self.leftmost(inner, nullable, out),
            Expr::Lit(_) | Expr::Class { .. } => {}
        }
    }

    fn check_left_recursion(&self) -> Result<(), String> {
        let mut nullable: HashMap<String, bool> =
            self.rules.keys().map(|k| (k.clone(), false)).collect();
        loop {
            let next: HashMap<String, bool> = self
                .rules
                .iter()
                .map(|(k, e)| (k.clone(), self.nullable(e, &nullable)))
                .collect();
            if next == nullable {
                break;
            }
            nullable = next;
        }
        for start in self.rules.keys() {
            let mut seen = BTreeSet::new();
            let mut stack = vec![start.clone()];
            while let Some(rule) = stack.pop() {
                let mut next = Vec::new();
                self.leftmost(&self.rules[&rule], &nullable, &mut next);
                for n in next {
                    if &n == start {
                        return Err(format!("rule `{start}` is left-recursive"));
                    }
                    if seen.insert(n.clone()) {
                        stack.push(n);
                    }
                }
            }
        }
        Ok(())
    }

    fn expr_cost(&self, expr: &Expr) -> u32 {
        match expr {
            Expr::Lit(_) | Expr::Class { .. } => 0,
            Expr::Ref(name) => self
                .cost
                .get(name)
                .copied()
                .unwrap_or(u32::MAX / 2)
                .saturating_add(1),
            Expr::Seq(items) => items.iter().map(|e| self.expr_cost(e)).max().unwrap_or(0),
            Expr::Alt(items) => items.iter().map(|e| self.expr_cost(e)).min().unwrap_or(0),
            Expr::Rep(inner, min, _) => {
                if *min == 0 {
                    0
                } else {
                    self.expr_cost(inner)
                }
            }
        }
    }

    fn compute_costs(&mut self) {
        loop {
            let next: HashMap<String, u32> = self
                .rules
                .iter()
                .map(|(k, e)| (k.clone(), self.expr_cost(e)))
                .collect();
            if next == self.cost {
                return;
            }
            self.cost = next;
        }
    }

    /// A random string of the grammar. Past `max_depth` rule expansions it
    /// takes the shortest way out, so recursive grammars terminate.
    pub(crate) fn sample(&self, rng: &mut Rng, max_depth: u32) -> String {
        let mut out = String::new();
        self.generate(&self.rules["root"], rng, 0, max_depth, &mut out);
        out
    }

    fn generate(&self, expr: &Expr, rng: &mut Rng, depth: u32, max_depth: u32, out: &mut String) {
        let finishing = depth > max_depth;
        match expr {
            Expr::Lit(text) => out.extend(text),
            Expr::Class { negated, ranges } => out.push(sample_class(*negated, ranges, rng)),
            Expr::Ref(name) => self.generate(&self.rules[name], rng, depth + 1, max_depth, out),
            Expr::Seq(items) => items
                .iter()
                .for_each(|e| self.generate(e, rng, depth, max_depth, out)),
            Expr::Alt(items) => {
                let pick = if finishing {
                    items
                        .iter()
                        .min_by_key(|e| self.expr_cost(e))
                        .unwrap_or(&items[0])
                } else {
                    &items[rng.below(items.len() as u64) as usize]
                };
                self.generate(pick, rng, depth, max_depth, out);
            }
            Expr::Rep(inner, min, max) => {
                let count = if finishing {
                    *min
                } else {
                    let max = max.unwrap_or(min + 6);
                    let span = max - min;
                    match rng.below(10) {
                        0 => max,
                        1 => *min,
                        _ => min + rng.below(span.min(8) + 1),
                    }
                };
                for _ in 0..count {
                    self.generate(inner, rng, depth, max_depth, out);
                }
            }
        }
    }

    /// Whether the whole of `text` is in the grammar.
    pub(crate) fn accepts(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut memo = HashMap::new();
        self.ends(&self.rules["root"], &chars, 0, &mut memo)
            .contains(&chars.len())
    }

    /// Every position where `expr` can end when it starts at `pos`.
    fn ends(
        &self,
        expr: &Expr,
        chars: &[char],
        pos: usize,
        memo: &mut HashMap<(String, usize), BTreeSet<usize>>,
    ) -> BTreeSet<usize> {
        match expr {
            Expr::Lit(text) => {
                if chars.get(pos..pos + text.len()) == Some(text.as_slice()) {
                    BTreeSet::from([pos + text.len()])
                } else {
                    BTreeSet::new()
                }
            }
            Expr::Class { negated, ranges } => match chars.get(pos) {
                Some(c) if ranges.iter().any(|(lo, hi)| (lo..=hi).contains(&c)) != *negated => {
                    BTreeSet::from([pos + 1])
                }
                _ => BTreeSet::new(),
            },
            Expr::Ref(name) => {
                if let Some(found) = memo.get(&(name.clone(), pos)) {
                    return found.clone();
                }
                let found = self.ends(&self.rules[name], chars, pos, memo);
                memo.insert((name.clone(), pos), found.clone());
                found
            }
            Expr::Seq(items) => {
                let mut at = BTreeSet::from([pos]);
                for item in items {
                    at = at
                        .iter()
                        .flat_map(|p| self.ends(item, chars, *p, memo))
                        .collect();
                }
                at
            }
            Expr::Alt(items) => items
                .iter()
                .flat_map(|e| self.ends(e, chars, pos, memo))
                .collect(),
            Expr::Rep(inner, min, max) => {
                let mut result = BTreeSet::new();
                let mut frontier = BTreeSet::from([pos]);
                let mut count = 0;
                loop {
                    if count >= *min {
                        result.extend(frontier.iter().copied());
                    }
                    if max.is_some_and(|m| count >= m) || frontier.is_empty() {
                        return result;
                    }
                    let next: BTreeSet<usize> = frontier
                        .iter()
                        .flat_map(|p| self.ends(inner, chars, *p, memo))
                        .collect();
                    // Past `min`, positions seen before add nothing new.
                    frontier = if count >= *min {
                        next.difference(&result).copied().collect()
                    } else {
                        next
                    };
                    count += 1;
                }
            }
        }
    }
}

const INTERESTING: &[char] = &[
    'é', 'ß', '中', '😀', '\u{7F}', '\u{0}', '\n', '"', '\\', '\u{1F}', '~', '/', ' ', 'a', 'Z',
];

fn sample_class(negated: bool, ranges: &[(char, char)], rng: &mut Rng) -> char {
    let inside = |c: char| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c));
    for _ in 0..1000 {
        let c = if negated {
            if rng.below(3) == 0 {
                INTERESTING[rng.below(INTERESTING.len() as u64) as usize]
            } else {
                char::from(b' ' + rng.below(95) as u8)
            }
        } else {
            let (lo, hi) = ranges[rng.below(ranges.len() as u64) as usize];
            match char::from_u32(
                u32::from(lo) + rng.below(u64::from(u32::from(hi) - u32::from(lo)) + 1) as u32,
            ) {
                Some(c) => c,
                None => continue,
            }
        };
        if inside(c) != negated {
            return c;
        }
    }
    panic!("could not sample a character from class {ranges:?} (negated: {negated})")
}

/// SplitMix64: small, seedable, good enough to explore grammars.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// With `TROUPE_GBNF_DUMP=<dir>` set, writes a grammar with strings it must
/// take and strings it must refuse as `<dir>/<n>.gbnf`, `.samples` and
/// `.rejects` (NUL-separated), for `llama_check.cpp` to run through
/// llama.cpp's own grammar engine. Without it, does nothing.
pub(crate) fn dump(gbnf: &str, samples: &[&str], rejects: &[&str]) {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let Some(dir) = std::env::var_os("TROUPE_GBNF_DUMP") else {
        return;
    };
    let base = std::path::Path::new(&dir).join(format!(
        "{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    let write = |ext: &str, text: &str| {
        std::fs::write(base.with_extension(ext), text)
            .unwrap_or_else(|e| panic!("writing the dump: {e}"))
    };
    write("gbnf", gbnf);
    write("samples", &samples.join("\0"));
    write("rejects", &rejects.join("\0"));
}
