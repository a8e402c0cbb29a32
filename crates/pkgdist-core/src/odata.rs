//! The OData subset the AdminService-style API accepts: `$filter`, `$select`, `$orderby`,
//! `$top` and `$skip`, evaluated over rows of JSON properties.
//!
//! `$filter` grammar (keywords are lowercase, as OData writes them):
//!
//! ```text
//! expr       := and ( "or" and )*
//! and        := unary ( "and" unary )*
//! unary      := "not" unary | primary
//! primary    := "(" expr ")" | operand [ op operand ]
//! op         := eq | ne | gt | ge | lt | le
//! operand    := Property | literal | func
//! func       := startswith(Property, 'text') | endswith(…) | contains(…) | tolower(Property) | toupper(Property)
//! literal    := 'text' ('' escapes a quote) | integer | decimal | true | false | null
//!               | an unquoted date-time such as 2026-01-02T03:04:05Z (compared as text)
//! ```
//!
//! Text comparisons ignore the case of ASCII letters, as ConfigMgr's SQL collation does:
//! `Name eq 'drivers'` finds "Drivers" (other letters compare as they are, as SQLite's
//! `lower` does; the site evaluates filters in SQL with this same rule, `pkgdist_db::view`). A comparison between values of different types (text with a number, say) is
//! false rather than an error, except that a literal compared to a property of another type is
//! refused when the property's type is known up front.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

/// A malformed query option, with what was expected and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("$filter: {message} at position {position}")]
    Syntax { message: String, position: usize },
    #[error("unknown property {0:?} in the query; property names are case-sensitive, as in ConfigMgr")]
    UnknownProperty(String),
    #[error("{option}: {message}")]
    Option { option: &'static str, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    const ALL: [(&'static str, CmpOp); 6] = [
        ("eq", CmpOp::Eq),
        ("ne", CmpOp::Ne),
        ("gt", CmpOp::Gt),
        ("ge", CmpOp::Ge),
        ("lt", CmpOp::Lt),
        ("le", CmpOp::Le),
    ];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, o)| *o == self).map_or("eq", |(n, _)| n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFn {
    StartsWith,
    EndsWith,
    Contains,
}

impl TextFn {
    fn name(self) -> &'static str {
        match self {
            TextFn::StartsWith => "startswith",
            TextFn::EndsWith => "endswith",
            TextFn::Contains => "contains",
        }
    }
}

/// A literal value in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Property(String),
    Literal(Literal),
    /// `startswith(Prop, 'x')` and friends, a boolean.
    Text(TextFn, String, String),
    Lower(String),
    Upper(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Cmp(Operand, CmpOp, Operand),
    /// An operand used as a condition on its own (a boolean property or function).
    Is(Operand),
}

impl Filter {
    /// Parses a `$filter` value, checking every property name against `known`.
    pub fn parse(input: &str, known: &dyn Fn(&str) -> bool) -> Result<Filter, QueryError> {
        let mut p = Parser {
            tokens: tokenize(input)?,
            pos: 0,
            known,
        };
        let f = p.expr(0)?;
        match p.peek() {
            None => Ok(f),
            Some(t) => Err(p.error(format!("unexpected {}", t.tok))),
        }
    }

    /// Whether a row matches.
    pub fn matches(&self, row: &Map<String, Value>) -> bool {
        match self {
            Filter::Or(a, b) => a.matches(row) || b.matches(row),
            Filter::And(a, b) => a.matches(row) && b.matches(row),
            Filter::Not(a) => !a.matches(row),
            Filter::Is(o) => eval(o, row) == Value::Bool(true),
            Filter::Cmp(a, op, b) => compare(&eval(a, row), *op, &eval(b, row)),
        }
    }
}

fn eval(o: &Operand, row: &Map<String, Value>) -> Value {
    let prop = |p: &String| row.get(p).cloned().unwrap_or(Value::Null);
    match o {
        Operand::Property(p) => prop(p),
        Operand::Literal(l) => match l {
            Literal::Null => Value::Null,
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::from(*i),
            Literal::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Literal::Text(s) => Value::String(s.clone()),
        },
        Operand::Text(f, p, needle) => match prop(p) {
            Value::String(s) => {
                let (s, n) = (s.to_ascii_lowercase(), needle.to_ascii_lowercase());
                Value::Bool(match f {
                    TextFn::StartsWith => s.starts_with(&n),
                    TextFn::EndsWith => s.ends_with(&n),
                    TextFn::Contains => s.contains(&n),
                })
            }
            _ => Value::Bool(false),
        },
        Operand::Lower(p) => match prop(p) {
            Value::String(s) => Value::String(s.to_ascii_lowercase()),
            v => v,
        },
        Operand::Upper(p) => match prop(p) {
            Value::String(s) => Value::String(s.to_ascii_uppercase()),
            v => v,
        },
    }
}

/// Orders two JSON values of the same type; `None` when they cannot be compared.
pub fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase())),
        _ => None,
    }
}

fn compare(a: &Value, op: CmpOp, b: &Value) -> bool {
    // null equals only null; ordering against null is false (OData's rule).
    if a.is_null() || b.is_null() {
        return match op {
            CmpOp::Eq => a.is_null() && b.is_null(),
            CmpOp::Ne => a.is_null() != b.is_null(),
            _ => false,
        };
    }
    let Some(o) = order(a, b) else { return op == CmpOp::Ne };
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
    }
}

// ---- printing (canonical form; `parse(print(f)) == f`) ----

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => write!(f, "{x:?}"),
            Literal::Text(s) => write!(f, "'{}'", s.replace('\'', "''")),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Property(p) => f.write_str(p),
            Operand::Literal(l) => write!(f, "{l}"),
            Operand::Text(func, p, s) => write!(f, "{}({p},{})", func.name(), Literal::Text(s.clone())),
            Operand::Lower(p) => write!(f, "tolower({p})"),
            Operand::Upper(p) => write!(f, "toupper({p})"),
        }
    }
}

/// Printed with the parentheses the grammar needs and no more (`or` and `and` group to the
/// left, `and` binds tighter, `not` tightest), so a parsed filter printed parses back to the
/// same tree, and nests no deeper than it was given: a long `a or b or c …` chain printed with
/// a pair per operator would exceed the nesting limit (found by fuzzing).
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn part(f: &mut fmt::Formatter<'_>, x: &Filter, paren: bool) -> fmt::Result {
            if paren { write!(f, "({x})") } else { write!(f, "{x}") }
        }
        let or = |x: &Filter| matches!(x, Filter::Or(..));
        let binary = |x: &Filter| matches!(x, Filter::Or(..) | Filter::And(..));
        match self {
            Filter::Or(a, b) => {
                write!(f, "{a} or ")?;
                part(f, b, or(b))
            }
            Filter::And(a, b) => {
                part(f, a, or(a))?;
                f.write_str(" and ")?;
                part(f, b, binary(b))
            }
            Filter::Not(a) => {
                f.write_str("not ")?;
                part(f, a, binary(a))
            }
            Filter::Cmp(a, op, b) => write!(f, "{a} {} {b}", op.name()),
            Filter::Is(o) => write!(f, "{o}"),
        }
    }
}

// ---- lexing ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Lit(Literal),
    Open,
    Close,
    Comma,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "{s:?}"),
            Tok::Lit(l) => write!(f, "{l}"),
            Tok::Open => f.write_str("'('"),
            Tok::Close => f.write_str("')'"),
            Tok::Comma => f.write_str("','"),
        }
    }
}

struct Token {
    tok: Tok,
    at: usize,
}

/// Longest filter accepted, in bytes: enough for any hand-written query, small enough that a
/// hostile one costs nothing.
const MAX_FILTER: usize = 8192;
/// Deepest nesting of parentheses and `not`s.
const MAX_DEPTH: usize = 64;

fn tokenize(input: &str) -> Result<Vec<Token>, QueryError> {
    let err = |message: &str, position| QueryError::Syntax {
        message: message.into(),
        position,
    };
    if input.len() > MAX_FILTER {
        return Err(err("longer than 8192 bytes", MAX_FILTER));
    }
    let b = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let at = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                out.push(Token { tok: Tok::Open, at });
                i += 1;
            }
            b')' => {
                out.push(Token { tok: Tok::Close, at });
                i += 1;
            }
            b',' => {
                out.push(Token { tok: Tok::Comma, at });
                i += 1;
            }
            b'\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let rest = &input[i..];
                    let Some(q) = rest.find('\'') else {
                        return Err(err("unterminated text literal", at));
                    };
                    s.push_str(&rest[..q]);
                    i += q + 1;
                    if b.get(i) == Some(&b'\'') {
                        s.push('\'');
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push(Token {
                    tok: Tok::Lit(Literal::Text(s)),
                    at,
                });
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'.' | b':' | b'-' | b'+')) {
                    i += 1;
                }
                let word = &input[start..i];
                out.push(Token {
                    tok: Tok::Lit(number_or_date(word).ok_or_else(|| err("malformed number", at))?),
                    at,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &input[start..i];
                let tok = match word {
                    "true" => Tok::Lit(Literal::Bool(true)),
                    "false" => Tok::Lit(Literal::Bool(false)),
                    "null" => Tok::Lit(Literal::Null),
                    _ => Tok::Ident(word.to_owned()),
                };
                out.push(Token { tok, at });
            }
            _ => return Err(err("unexpected character", at)),
        }
    }
    Ok(out)
}

fn number_or_date(word: &str) -> Option<Literal> {
    if let Ok(i) = word.parse::<i64>() {
        return Some(Literal::Int(i));
    }
    if word
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'e' | b'E' | b'+'))
        && let Ok(f) = word.parse::<f64>()
        && f.is_finite()
    {
        return Some(Literal::Float(f));
    }
    // 2026-01-02 or 2026-01-02T03:04:05[.fff]Z: compared as text against stored timestamps,
    // which the API always writes in this same UTC form.
    let looks_like_date = word.len() >= 10
        && word.as_bytes()[4] == b'-'
        && word.as_bytes()[7] == b'-'
        && word[..4].bytes().all(|c| c.is_ascii_digit());
    looks_like_date.then(|| Literal::Text(word.to_owned()))
}

// ---- parsing ----

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    known: &'a dyn Fn(&str) -> bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn position(&self) -> usize {
        self.peek()
            .map_or_else(|| self.tokens.last().map_or(0, |t| t.at + 1), |t| t.at)
    }

    fn error(&self, message: String) -> QueryError {
        QueryError::Syntax {
            message,
            position: self.position(),
        }
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Token { tok: Tok::Ident(w), .. }) if w == kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), QueryError> {
        match self.peek() {
            Some(t) if t.tok == want => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.error(format!("expected {what}"))),
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Filter, QueryError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply".into()));
        }
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, QueryError> {
        let mut left = self.unary(depth)?;
        while self.keyword("and") {
            let right = self.unary(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, QueryError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply".into()));
        }
        if self.keyword("not") {
            return Ok(Filter::Not(Box::new(self.unary(depth + 1)?)));
        }
        if matches!(self.peek(), Some(Token { tok: Tok::Open, .. })) {
            self.pos += 1;
            let inner = self.expr(depth + 1)?;
            self.expect(Tok::Close, "')'")?;
            return Ok(inner);
        }
        let left = self.operand()?;
        let op = match self.peek() {
            Some(Token { tok: Tok::Ident(w), .. }) => CmpOp::ALL.iter().find(|(n, _)| n == w).map(|(_, o)| *o),
            _ => None,
        };
        match op {
            Some(op) => {
                self.pos += 1;
                let right = self.operand()?;
                Ok(Filter::Cmp(left, op, right))
            }
            None => match left {
                Operand::Literal(_) => {
                    Err(self.error("expected a comparison operator (eq, ne, gt, ge, lt, le)".into()))
                }
                o => Ok(Filter::Is(o)),
            },
        }
    }

    fn property(&mut self) -> Result<String, QueryError> {
        match self.peek() {
            Some(Token { tok: Tok::Ident(w), .. }) => {
                let w = w.clone();
                if !(self.known)(&w) {
                    return Err(QueryError::UnknownProperty(w));
                }
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.error("expected a property name".into())),
        }
    }

    fn operand(&mut self) -> Result<Operand, QueryError> {
        let Some(t) = self.peek() else {
            return Err(self.error("unexpected end of filter".into()));
        };
        match &t.tok {
            Tok::Lit(l) => {
                let l = l.clone();
                self.pos += 1;
                Ok(Operand::Literal(l))
            }
            Tok::Ident(w) if self.tokens.get(self.pos + 1).is_some_and(|n| n.tok == Tok::Open) => {
                // Function names in any case: clients send `startsWith` as well.
                let func = w.to_ascii_lowercase();
                self.pos += 2;
                let out = match func.as_str() {
                    "startswith" | "endswith" | "contains" => {
                        let f = match func.as_str() {
                            "startswith" => TextFn::StartsWith,
                            "endswith" => TextFn::EndsWith,
                            _ => TextFn::Contains,
                        };
                        let p = self.property()?;
                        self.expect(Tok::Comma, "','")?;
                        let needle = match self.peek() {
                            Some(Token {
                                tok: Tok::Lit(Literal::Text(s)),
                                ..
                            }) => s.clone(),
                            _ => return Err(self.error(format!("{func} takes a text literal as its second argument"))),
                        };
                        self.pos += 1;
                        Operand::Text(f, p, needle)
                    }
                    "tolower" => Operand::Lower(self.property()?),
                    "toupper" => Operand::Upper(self.property()?),
                    _ => {
                        self.pos -= 2;
                        return Err(self.error(format!(
                            "unsupported function {func:?} (supported: startswith, endswith, contains, tolower, toupper)"
                        )));
                    }
                };
                self.expect(Tok::Close, "')'")?;
                Ok(out)
            }
            Tok::Ident(_) => Ok(Operand::Property(self.property()?)),
            _ => Err(self.error("expected a property, a literal or a function".into())),
        }
    }
}

// ---- the other query options ----

/// One `$orderby` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    pub property: String,
    pub descending: bool,
}

/// All query options of one request, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub filter: Option<Filter>,
    pub select: Option<Vec<String>>,
    pub order_by: Vec<OrderKey>,
    pub top: Option<usize>,
    pub skip: usize,
}

impl Query {
    /// Parses the raw option values (`$filter`, `$select`, `$orderby`, `$top`, `$skip`).
    pub fn parse(
        filter: Option<&str>,
        select: Option<&str>,
        order_by: Option<&str>,
        top: Option<&str>,
        skip: Option<&str>,
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Query, QueryError> {
        let names = |option: &'static str, s: &str| -> Result<Vec<String>, QueryError> {
            s.split(',')
                .map(|p| {
                    let p = p.trim();
                    if p.is_empty() {
                        Err(QueryError::Option {
                            option,
                            message: "empty property name".into(),
                        })
                    } else if !known(p) {
                        Err(QueryError::UnknownProperty(p.to_owned()))
                    } else {
                        Ok(p.to_owned())
                    }
                })
                .collect()
        };
        let count = |option: &'static str, s: &str| -> Result<usize, QueryError> {
            s.trim().parse::<usize>().map_err(|_| QueryError::Option {
                option,
                message: format!("{s:?} is not a non-negative whole number"),
            })
        };
        let mut order_keys = Vec::new();
        if let Some(o) = order_by {
            for part in o.split(',') {
                let mut words = part.split_whitespace();
                let (Some(p), dir, None) = (words.next(), words.next(), words.next()) else {
                    return Err(QueryError::Option {
                        option: "$orderby",
                        message: format!("cannot read {part:?}"),
                    });
                };
                let descending = match dir {
                    None | Some("asc") => false,
                    Some("desc") => true,
                    Some(d) => {
                        return Err(QueryError::Option {
                            option: "$orderby",
                            message: format!("direction {d:?} (asc or desc)"),
                        });
                    }
                };
                let property = names("$orderby", p)?.remove(0);
                order_keys.push(OrderKey { property, descending });
            }
        }
        Ok(Query {
            filter: filter.map(|f| Filter::parse(f, known)).transpose()?,
            select: select.map(|s| names("$select", s)).transpose()?,
            order_by: order_keys,
            top: top.map(|t| count("$top", t)).transpose()?,
            skip: skip.map(|s| count("$skip", s)).transpose()?.unwrap_or(0),
        })
    }

    /// Applies the query to rows: filter, order, skip, top, select.
    pub fn apply(&self, rows: Vec<Map<String, Value>>) -> Vec<Map<String, Value>> {
        let mut rows: Vec<_> = rows
            .into_iter()
            .filter(|r| self.filter.as_ref().is_none_or(|f| f.matches(r)))
            .collect();
        if !self.order_by.is_empty() {
            rows.sort_by(|a, b| {
                for k in &self.order_by {
                    let (x, y) = (
                        a.get(&k.property).unwrap_or(&Value::Null),
                        b.get(&k.property).unwrap_or(&Value::Null),
                    );
                    // Nulls first, as SQL Server orders them ascending.
                    let o = match (x.is_null(), y.is_null()) {
                        (true, false) => Ordering::Less,
                        (false, true) => Ordering::Greater,
                        _ => order(x, y).unwrap_or(Ordering::Equal),
                    };
                    let o = if k.descending { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            });
        }
        let rows = rows.into_iter().skip(self.skip).take(self.top.unwrap_or(usize::MAX));
        match &self.select {
            None => rows.collect(),
            Some(sel) => rows
                .map(|mut r| {
                    let mut out = Map::new();
                    for p in sel {
                        out.insert(p.clone(), r.remove(p).unwrap_or(Value::Null));
                    }
                    out
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
