//! Class reads in SQL: a [`View`] describes how a class's properties are computed from the
//! tables (one SQL expression per property), and [`Db::select`] turns an OData query over it —
//! `$filter`, `$orderby`, `$top`, `$skip` — into one statement with bound parameters, on SQLite
//! and PostgreSQL alike. Nothing is read that the query does not return.
//!
//! # The one rule: SQL answers what the in-memory evaluator answers
//!
//! `pkgdist_core::odata::Query::apply` is the reference. The translation keeps its semantics
//! exactly (a property test runs random filters over random rows on both engines):
//! - every comparison is two-valued: `null eq null` is true, `x ne null` is true when `x` is
//!   not null, ordering against null is false; so `not` never meets SQL's NULL;
//! - text compares without regard to ASCII case ([`fold`]), in byte order (`COLLATE "C"` on
//!   PostgreSQL, whose default collation depends on the server's locale);
//! - values of different types are never equal (`ne` is true, the rest false);
//! - `$orderby` puts nulls first ascending, last descending; ties keep the view's own order.
//!
//! Views are written by the site (their SQL is code, never request text); every value from a
//! request is a bound parameter.

use std::fmt::Write as _;

use pkgdist_core::odata::{CmpOp, Filter, Literal, Operand, Query, TextFn};
use serde_json::{Map, Value};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::{Db, DbError, Dialect, Result};

/// How a property's SQL value becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    /// Stored as 0 or 1.
    Bool,
}

/// One property of a view.
#[derive(Debug, Clone)]
pub struct Column {
    pub prop: &'static str,
    /// The SQL expression, over the view's `FROM`.
    pub sql: String,
    pub kind: Kind,
    pub nullable: bool,
    /// The values are made of ASCII digits and upper-case letters only (IDs, site codes):
    /// equality compares the column itself with the upper-cased literal, and ordering uses
    /// the column's own order, so its index serves both.
    pub upper: bool,
}

impl Column {
    pub fn new(prop: &'static str, sql: impl Into<String>, kind: Kind) -> Self {
        Self {
            prop,
            sql: sql.into(),
            kind,
            nullable: false,
            upper: false,
        }
    }

    /// The value may be null.
    pub fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }

    /// The values are made of ASCII digits and upper-case letters only.
    pub fn upper(mut self) -> Self {
        self.upper = true;
        self
    }
}

pub fn text(prop: &'static str, sql: impl Into<String>) -> Column {
    Column::new(prop, sql, Kind::Text)
}

pub fn int(prop: &'static str, sql: impl Into<String>) -> Column {
    Column::new(prop, sql, Kind::Int)
}

pub fn boolean(prop: &'static str, sql: impl Into<String>) -> Column {
    Column::new(prop, sql, Kind::Bool)
}

/// A class as SQL: `SELECT <columns> FROM <from> [WHERE …] ORDER BY …`.
#[derive(Debug, Clone)]
pub struct View {
    /// `FROM` clause contents: tables, joins, or a subquery with an alias.
    pub from: String,
    /// A condition every instance meets (e.g. the package type of a package class).
    pub base: Option<String>,
    pub columns: Vec<Column>,
    /// The view's own order, as properties (ascending, exact): its key. Ties in `$orderby`
    /// fall back to it, so paging is stable.
    pub order: Vec<&'static str>,
}

impl View {
    pub fn column(&self, prop: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.prop == prop)
    }
}

/// A property the query names that the view cannot compute in SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} cannot be used in $filter or $orderby (it is computed per instance)")]
pub struct NotQueryable(pub String);

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Text(String),
    Int(i64),
    Float(f64),
}

/// Builds one statement, numbering parameters as they are added.
struct Sql {
    dialect: Dialect,
    args: Vec<Arg>,
}

/// ASCII case folding as SQL: the same on both engines (PostgreSQL's `lower` folds more than
/// ASCII under most locales; SQLite's only ASCII), and the same as the in-memory evaluator.
pub(crate) fn fold(dialect_pg: bool, expr: &str) -> String {
    if dialect_pg {
        format!("translate({expr}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')")
    } else {
        format!("lower({expr})")
    }
}

const TRUE: &str = "(1=1)";
const FALSE: &str = "(1=0)";

/// What an operand is in SQL.
#[derive(Debug, Clone)]
enum Term {
    Null,
    /// An expression of a kind; `nullable` if it can be NULL. Boolean terms are 0/1 integers.
    Expr {
        sql: String,
        kind: TermKind,
        nullable: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TermKind {
    Text,
    Int,
    Float,
    Bool,
}

impl Sql {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            args: Vec::new(),
        }
    }

    fn pg(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    fn bind(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    /// Text in byte order: PostgreSQL's default collation follows the server's locale.
    fn bytewise(&self, expr: String) -> String {
        if self.pg() {
            format!("{expr} COLLATE \"C\"")
        } else {
            expr
        }
    }

    fn term(&mut self, view: &View, o: &Operand) -> std::result::Result<Term, NotQueryable> {
        let col = |p: &str| view.column(p).ok_or_else(|| NotQueryable(p.to_owned()));
        Ok(match o {
            Operand::Literal(l) => match l {
                Literal::Null => Term::Null,
                Literal::Bool(b) => Term::Expr {
                    sql: self.bind(Arg::Int(i64::from(*b))),
                    kind: TermKind::Bool,
                    nullable: false,
                },
                Literal::Int(i) => Term::Expr {
                    sql: self.bind(Arg::Int(*i)),
                    kind: TermKind::Int,
                    nullable: false,
                },
                Literal::Float(f) => Term::Expr {
                    sql: self.bind(Arg::Float(*f)),
                    kind: TermKind::Float,
                    nullable: false,
                },
                Literal::Text(s) => Term::Expr {
                    sql: self.bind(Arg::Text(s.to_ascii_lowercase())),
                    kind: TermKind::Text,
                    nullable: false,
                },
            },
            Operand::Property(p) | Operand::Lower(p) | Operand::Upper(p) => {
                // tolower/toupper change nothing a case-blind comparison can see.
                let c = col(p)?;
                let kind = match c.kind {
                    Kind::Text => TermKind::Text,
                    Kind::Int => TermKind::Int,
                    Kind::Bool => TermKind::Bool,
                };
                let sql = if kind == TermKind::Text {
                    fold(self.pg(), &c.sql)
                } else {
                    format!("({})", c.sql)
                };
                Term::Expr {
                    sql,
                    kind,
                    nullable: c.nullable,
                }
            }
            Operand::Text(f, p, needle) => {
                let c = col(p)?;
                if c.kind != Kind::Text {
                    return Ok(Term::Expr {
                        sql: "0".into(),
                        kind: TermKind::Bool,
                        nullable: false,
                    });
                }
                let escaped: String = needle
                    .to_ascii_lowercase()
                    .chars()
                    .flat_map(|ch| match ch {
                        '%' | '_' | '\\' => vec!['\\', ch],
                        ch => vec![ch],
                    })
                    .collect();
                let pattern = match f {
                    TextFn::StartsWith => format!("{escaped}%"),
                    TextFn::EndsWith => format!("%{escaped}"),
                    TextFn::Contains => format!("%{escaped}%"),
                };
                let arg = self.bind(Arg::Text(pattern));
                let folded = self.bytewise(fold(self.pg(), &c.sql));
                let cond = format!("{folded} LIKE {arg} ESCAPE '\\'");
                let cond = if c.nullable {
                    format!("({} IS NOT NULL AND {cond})", c.sql)
                } else {
                    cond
                };
                Term::Expr {
                    sql: format!("(CASE WHEN {cond} THEN 1 ELSE 0 END)"),
                    kind: TermKind::Bool,
                    nullable: false,
                }
            }
        })
    }

    /// The condition of a filter: always true or false, never NULL.
    fn condition(&mut self, view: &View, f: &Filter) -> std::result::Result<String, NotQueryable> {
        Ok(match f {
            Filter::Or(a, b) => format!("({} OR {})", self.condition(view, a)?, self.condition(view, b)?),
            Filter::And(a, b) => format!("({} AND {})", self.condition(view, a)?, self.condition(view, b)?),
            Filter::Not(a) => format!("(NOT {})", self.condition(view, a)?),
            Filter::Is(o) => match self.term(view, o)? {
                Term::Expr {
                    sql,
                    kind: TermKind::Bool,
                    nullable,
                } => {
                    if nullable {
                        format!("({sql} IS NOT NULL AND {sql} = 1)")
                    } else {
                        format!("({sql} = 1)")
                    }
                }
                _ => FALSE.into(),
            },
            Filter::Cmp(a, op, b) => {
                // Equality on an upper-case column with a literal compares the column itself,
                // so its index serves `PackageID eq 'ps100001'`.
                if let (Operand::Property(p), Operand::Literal(Literal::Text(s)), CmpOp::Eq | CmpOp::Ne) = (a, b, op)
                    && let Some(c) = view.column(p).filter(|c| c.upper && c.kind == Kind::Text)
                {
                    let arg = self.bind(Arg::Text(s.to_ascii_uppercase()));
                    let eq = if c.nullable {
                        format!("({} IS NOT NULL AND {} = {arg})", c.sql, c.sql)
                    } else {
                        format!("({} = {arg})", c.sql)
                    };
                    return Ok(if *op == CmpOp::Eq { eq } else { format!("(NOT {eq})") });
                }
                let (x, y) = (self.term(view, a)?, self.term(view, b)?);
                self.compare(x, *op, y)
            }
        })
    }

    fn compare(&self, x: Term, op: CmpOp, y: Term) -> String {
        let nullable = |t: &Term| match t {
            Term::Null => true,
            Term::Expr { nullable, .. } => *nullable,
        };
        // Both null: only for two terms that may be null.
        let both_null = match (&x, &y) {
            (Term::Null, Term::Null) => TRUE.to_owned(),
            (
                Term::Null,
                Term::Expr {
                    sql, nullable: true, ..
                },
            )
            | (
                Term::Expr {
                    sql, nullable: true, ..
                },
                Term::Null,
            ) => {
                format!("({sql} IS NULL)")
            }
            (
                Term::Expr {
                    sql: a, nullable: true, ..
                },
                Term::Expr {
                    sql: b, nullable: true, ..
                },
            ) => format!("({a} IS NULL AND {b} IS NULL)"),
            _ => FALSE.to_owned(),
        };
        let negate = |c: String| -> String {
            match c.as_str() {
                TRUE => FALSE.to_owned(),
                FALSE => TRUE.to_owned(),
                _ => format!("(NOT {c})"),
            }
        };
        let (Term::Expr { sql: xs, kind: xk, .. }, Term::Expr { sql: ys, kind: yk, .. }) = (&x, &y) else {
            // A null literal: equal only to null; never ordered.
            return match op {
                CmpOp::Eq => both_null,
                CmpOp::Ne => negate(both_null),
                _ => FALSE.into(),
            };
        };
        let numeric = |k: TermKind| matches!(k, TermKind::Int | TermKind::Float);
        if !(xk == yk || (numeric(*xk) && numeric(*yk))) {
            // Different types are never equal, and never ordered.
            return match op {
                CmpOp::Eq => both_null,
                CmpOp::Ne => negate(both_null),
                _ => FALSE.into(),
            };
        }
        let (xs, ys) = if *xk == TermKind::Text {
            (self.bytewise(xs.clone()), self.bytewise(ys.clone()))
        } else {
            (xs.clone(), ys.clone())
        };
        // The comparison where both are present, guarded against NULL.
        let mut present: Vec<String> = Vec::new();
        for t in [&x, &y] {
            if let Term::Expr {
                sql, nullable: true, ..
            } = t
            {
                present.push(format!("{sql} IS NOT NULL"));
            }
        }
        let guarded = |cmp: String| -> String {
            if present.is_empty() {
                format!("({cmp})")
            } else {
                format!("({} AND {cmp})", present.join(" AND "))
            }
        };
        let sql_op = match op {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        };
        match op {
            CmpOp::Eq if nullable(&x) && nullable(&y) => {
                format!("({both_null} OR {})", guarded(format!("{xs} = {ys}")))
            }
            // Two values that cannot be null: `<>` as two ranges, which an index serves.
            CmpOp::Ne if !nullable(&x) && !nullable(&y) => {
                if numeric(*xk) && self.pg() {
                    format!("({xs} < {ys} OR {xs} > {ys})")
                } else if numeric(*xk) {
                    // `State ne 0` asks for the exceptions: tell SQLite's planner they are few,
                    // so it reads them through an index instead of scanning in key order (it
                    // has no statistics of values; PostgreSQL has).
                    format!("likelihood(({xs} < {ys} OR {xs} > {ys}), 0.01)")
                } else {
                    format!("({xs} <> {ys})")
                }
            }
            CmpOp::Ne => negate(self.compare(x.clone(), CmpOp::Eq, y.clone())),
            _ => guarded(format!("{xs} {sql_op} {ys}")),
        }
    }

    /// One `ORDER BY` key. Upper-case ID columns order the same folded or not, and in every
    /// collation: their own order (and index) serves.
    fn order_key(&self, c: &Column, descending: bool, folded: bool) -> String {
        let expr = match c.kind {
            Kind::Text if c.upper => c.sql.clone(),
            Kind::Text if folded => self.bytewise(fold(self.pg(), &c.sql)),
            Kind::Text => self.bytewise(c.sql.clone()),
            _ => format!("({})", c.sql),
        };
        // Nulls first ascending, last descending, on both engines.
        match (descending, c.nullable) {
            (false, false) => format!("{expr} ASC"),
            (true, false) => format!("{expr} DESC"),
            (false, true) => format!("{expr} ASC NULLS FIRST"),
            (true, true) => format!("{expr} DESC NULLS LAST"),
        }
    }
}

/// The statement of `query` over `view`, and its parameters.
fn statement(
    dialect: Dialect,
    view: &View,
    query: &Query,
    exact: &[(&str, &str)],
) -> std::result::Result<(String, Vec<Arg>), NotQueryable> {
    shaped(dialect, view, query, exact, Shape::Rows)
}

/// What a statement answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The instances, in order, `$top`/`$skip` applied.
    Rows,
    /// How many instances the conditions select: no columns, no order.
    Count,
}

fn shaped(
    dialect: Dialect,
    view: &View,
    query: &Query,
    exact: &[(&str, &str)],
    shape: Shape,
) -> std::result::Result<(String, Vec<Arg>), NotQueryable> {
    let mut s = Sql::new(dialect);
    let mut conds: Vec<String> = view.base.iter().cloned().collect();
    for (prop, value) in exact {
        let c = view.column(prop).ok_or_else(|| NotQueryable((*prop).to_owned()))?;
        let arg = match c.kind {
            Kind::Text => s.bind(Arg::Text((*value).to_owned())),
            // A key that is no number names nothing.
            Kind::Int | Kind::Bool => match value.parse::<i64>() {
                Ok(i) => s.bind(Arg::Int(i)),
                Err(_) => {
                    conds.push(FALSE.to_owned());
                    continue;
                }
            },
        };
        conds.push(format!("({}) = {arg}", c.sql));
    }
    if let Some(f) = &query.filter {
        conds.push(s.condition(view, f)?);
    }
    if shape == Shape::Count {
        let mut sql = format!("SELECT COUNT(*) FROM {}", view.from);
        if !conds.is_empty() {
            let _ = write!(sql, " WHERE {}", conds.join(" AND "));
        }
        return Ok(compact(&sql, s.args));
    }
    let mut order = Vec::new();
    for k in &query.order_by {
        let c = view
            .column(&k.property)
            .ok_or_else(|| NotQueryable(k.property.clone()))?;
        // A constant orders nothing, and an integer literal in ORDER BY names a column by its
        // position on both engines (`ORDER BY 0` is an error): such a key is left out.
        if c.sql.trim().parse::<i64>().is_err() {
            order.push(s.order_key(c, k.descending, true));
        }
    }
    for p in &view.order {
        let c = view.column(p).ok_or_else(|| NotQueryable((*p).to_owned()))?;
        order.push(s.order_key(c, false, false));
    }
    let mut sql = String::from("SELECT ");
    for (i, c) in view.columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "{} AS c{i}", c.sql);
    }
    let _ = write!(sql, " FROM {}", view.from);
    if !conds.is_empty() {
        let _ = write!(sql, " WHERE {}", conds.join(" AND "));
    }
    if !order.is_empty() {
        let _ = write!(sql, " ORDER BY {}", order.join(", "));
    }
    if query.top.is_some() || query.skip > 0 {
        let top = query.top.map_or(i64::MAX, |t| i64::try_from(t).unwrap_or(i64::MAX));
        let skip = i64::try_from(query.skip).unwrap_or(i64::MAX);
        let (t, k) = (s.bind(Arg::Int(top)), s.bind(Arg::Int(skip)));
        let _ = write!(sql, " LIMIT {t} OFFSET {k}");
    }
    Ok(compact(&sql, s.args))
}

/// Drops the parameters the statement does not use (a literal bound for a comparison that
/// turned out constant) and renumbers the rest: PostgreSQL refuses unused parameters.
fn compact(sql: &str, args: Vec<Arg>) -> (String, Vec<Arg>) {
    let mut out = String::with_capacity(sql.len());
    let mut renumbered: Vec<Option<usize>> = vec![None; args.len()];
    let mut kept = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let n: Option<usize> = rest[at + 1..at + 1 + digits].parse().ok();
        match n.and_then(|n| n.checked_sub(1)).filter(|i| *i < args.len()) {
            Some(i) => {
                let new = *renumbered[i].get_or_insert_with(|| {
                    kept.push(args[i].clone());
                    kept.len()
                });
                let _ = write!(out, "${new}");
            }
            None => out.push_str(&rest[at..at + 1 + digits]),
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    (out, kept)
}

/// A row of a view as a JSON object, `$select` applied.
fn object(view: &View, row: &AnyRow, select: Option<&[String]>) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for (i, c) in view.columns.iter().enumerate() {
        if select.is_some_and(|s| !s.iter().any(|p| p == c.prop)) {
            continue;
        }
        let v = match c.kind {
            Kind::Text => row.try_get::<Option<String>, _>(i)?.map_or(Value::Null, Value::String),
            Kind::Int => row.try_get::<Option<i64>, _>(i)?.map_or(Value::Null, Value::from),
            Kind::Bool => row
                .try_get::<Option<i64>, _>(i)?
                .map_or(Value::Null, |b| Value::Bool(b != 0)),
        };
        m.insert(c.prop.to_owned(), v);
    }
    Ok(m)
}

/// Why a view read failed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    NotQueryable(#[from] NotQueryable),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for ViewError {
    fn from(e: sqlx::Error) -> Self {
        ViewError::Db(DbError::Sql(e))
    }
}

/// Rows of a streamed select, as they are read: `Ok(Some(row))` for each row, then `Ok(None)`
/// once every row has been read. A receiver that closes without `Ok(None)` was cut short
/// (an error item says why, or the consumer stalled for longer than the read waits).
pub type RowStream = tokio::sync::mpsc::Receiver<std::result::Result<Option<Map<String, Value>>, ViewError>>;

/// Streamed selects at once, each holding a connection for as long as its consumer reads:
/// half the pool, so slow listings never starve the rest of the site.
pub(crate) const STREAMS: usize = 4;

/// How many rows a streamed select reads ahead of its consumer.
const STREAM_AHEAD: usize = 256;

/// How long a streamed select waits for its consumer to take a row before it gives up (and
/// gives its connection back to the pool): a client that stops reading holds nothing for long.
const STREAM_STALL: std::time::Duration = std::time::Duration::from_secs(60);

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for a in args {
        q = match a {
            Arg::Text(t) => q.bind(t),
            Arg::Int(i) => q.bind(i),
            Arg::Float(f) => q.bind(f),
        };
    }
    q
}

fn bind_all_scalar<'q, O>(
    mut q: sqlx::query::QueryScalar<'q, sqlx::Any, O, sqlx::any::AnyArguments>,
    args: Vec<Arg>,
) -> sqlx::query::QueryScalar<'q, sqlx::Any, O, sqlx::any::AnyArguments> {
    for a in args {
        q = match a {
            Arg::Text(t) => q.bind(t),
            Arg::Int(i) => q.bind(i),
            Arg::Float(f) => q.bind(f),
        };
    }
    q
}

impl Db {
    /// The instances of `view` that `query` selects, streamed: a task reads them a few hundred
    /// ahead of the consumer, so a response of any size holds a bounded number of rows in
    /// memory. The receiver ends early, after an error item, if the read fails; dropping it
    /// stops the read.
    pub fn select_stream(&self, view: &View, query: &Query) -> std::result::Result<RowStream, NotQueryable> {
        use tokio_stream::StreamExt as _;
        let (sql, args) = statement(self.dialect, view, query, &[])?;
        let (view, select, pool) = (view.clone(), query.select.clone(), self.pool.clone());
        let streams = self.streams.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_AHEAD);
        tokio::spawn(async move {
            let Ok(_permit) = streams.acquire_owned().await else {
                return;
            };
            let q = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args);
            let mut rows = q.fetch(&pool);
            while let Some(row) = rows.next().await {
                let item = row
                    .map_err(ViewError::from)
                    .and_then(|r| object(&view, &r, select.as_deref()).map(Some).map_err(ViewError::from));
                let failed = item.is_err();
                match tokio::time::timeout(STREAM_STALL, tx.send(item)).await {
                    Ok(Ok(())) if !failed => {}
                    _ => return,
                }
            }
            let _ = tokio::time::timeout(STREAM_STALL, tx.send(Ok(None))).await;
        });
        Ok(rx)
    }

    /// How many instances of `view` `query`'s filter selects (`$top`, `$skip`, `$orderby` and
    /// `$select` do not count, as in OData's `/$count`).
    pub async fn count(&self, view: &View, query: &Query) -> std::result::Result<u64, ViewError> {
        let (sql, args) = shaped(self.dialect, view, query, &[], Shape::Count)?;
        let n: i64 = bind_all_scalar(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)), args)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The instances of `view` that `query` selects, in its order, `$select` applied (a
    /// property the view does not hold is left for the caller to add).
    pub async fn select(&self, view: &View, query: &Query) -> std::result::Result<Vec<Map<String, Value>>, ViewError> {
        self.select_where(view, query, &[]).await
    }

    /// Like [`Db::select`], restricted to instances whose properties equal `exact` exactly
    /// (a key lookup: the columns' indexes serve it).
    pub async fn select_where(
        &self,
        view: &View,
        query: &Query,
        exact: &[(&str, &str)],
    ) -> std::result::Result<Vec<Map<String, Value>>, ViewError> {
        let (sql, args) = statement(self.dialect, view, query, exact)?;
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
            .fetch_all(&self.pool)
            .await?;
        let select = query.select.as_deref();
        Ok(rows
            .iter()
            .map(|r| object(view, r, select))
            .collect::<Result<Vec<_>>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View {
            from: "packages".into(),
            base: None,
            columns: vec![
                text("PackageID", "package_id").upper(),
                text("Name", "name"),
                int("SourceVersion", "source_version"),
                text("SourceDate", "source_date").nullable(),
            ],
            order: vec!["PackageID"],
        }
    }

    fn sql(dialect: Dialect, filter: &str) -> (String, Vec<Arg>) {
        let known = |p: &str| view().column(p).is_some();
        let q = Query::parse(Some(filter), None, None, None, None, &known).unwrap();
        statement(dialect, &view(), &q, &[]).unwrap()
    }

    #[test]
    fn ids_compare_by_index_and_text_by_fold() {
        let (s, a) = sql(Dialect::Sqlite, "PackageID eq 'ps100001'");
        assert!(s.contains("WHERE (package_id = $1)"), "{s}");
        assert_eq!(a, vec![Arg::Text("PS100001".into())]);
        let (s, a) = sql(Dialect::Postgres, "Name eq 'Drivers'");
        assert!(s.contains("translate(name"), "{s}");
        assert!(s.contains("COLLATE \"C\""), "{s}");
        assert_eq!(a, vec![Arg::Text("drivers".into())]);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        let (_, a) = sql(Dialect::Sqlite, "startswith(Name, '50%_a\\')");
        assert_eq!(a, vec![Arg::Text("50\\%\\_a\\\\%".into())]);
    }

    #[test]
    fn unused_parameters_are_dropped() {
        let (s, a) = sql(Dialect::Postgres, "SourceVersion gt 'x' or Name eq 'a' or 1 eq 'b'");
        assert!(s.contains("$1") && !s.contains("$2"), "{s}");
        assert_eq!(a, vec![Arg::Text("a".into())]);
    }

    #[test]
    fn nulls_and_mismatches_are_two_valued() {
        let (s, _) = sql(Dialect::Sqlite, "SourceDate ne null");
        assert!(s.contains("NOT"), "{s}");
        let (s, a) = sql(Dialect::Sqlite, "SourceVersion gt 'x'");
        assert!(s.contains("WHERE (1=0)"), "{s}");
        assert!(a.is_empty());
    }

    #[test]
    fn unknown_columns_are_refused() {
        let v = view();
        let known = |_: &str| true;
        let q = Query::parse(Some("Other eq 1"), None, None, None, None, &known).unwrap();
        assert_eq!(
            statement(Dialect::Sqlite, &v, &q, &[]).unwrap_err(),
            NotQueryable("Other".into())
        );
    }
}
