//! The SQL translation of OData queries against its reference: random filters, orders and
//! pages over random rows give the same instances, in the same order, from SQL — on SQLite and
//! on PostgreSQL — as `pkgdist_core::odata::Query::apply` over the same rows in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pkgdist_core::odata::{CmpOp, Filter, Literal, Operand, OrderKey, Query, TextFn};
use pkgdist_db::view::{boolean, int, text};
use pkgdist_db::{Db, PackageRow, View};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

mod common;

/// A view over `packages` with every kind of column: upper-case IDs, free text with LIKE's
/// special characters, nullable text, integers, and a boolean.
fn view() -> View {
    View {
        from: "packages p".into(),
        base: None,
        columns: vec![
            text("PackageID", "p.package_id").upper(),
            text("Name", "p.name"),
            text("Description", "p.description"),
            text("SourceDate", "p.source_date").nullable(),
            text("ManifestHash", "p.manifest_hash").nullable(),
            int("SourceVersion", "p.source_version"),
            int("PkgFlags", "p.pkg_flags"),
            boolean("ActionInProgress", "p.action_in_progress"),
        ],
        order: vec!["PackageID"],
    }
}

const PROPS: [&str; 8] = [
    "PackageID",
    "Name",
    "Description",
    "SourceDate",
    "ManifestHash",
    "SourceVersion",
    "PkgFlags",
    "ActionInProgress",
];

#[derive(Debug, Clone)]
struct Row {
    id: String,
    name: String,
    description: String,
    source_date: Option<String>,
    manifest_hash: Option<String>,
    source_version: i64,
    pkg_flags: i64,
    busy: bool,
}

impl Row {
    fn object(&self) -> Map<String, Value> {
        let Value::Object(m) = json!({
            "PackageID": self.id,
            "Name": self.name,
            "Description": self.description,
            "SourceDate": self.source_date,
            "ManifestHash": self.manifest_hash,
            "SourceVersion": self.source_version,
            "PkgFlags": self.pkg_flags,
            "ActionInProgress": self.busy,
        }) else {
            unreachable!()
        };
        m
    }

    fn stored(&self) -> PackageRow {
        PackageRow {
            name: self.name.clone(),
            description: self.description.clone(),
            pkg_source_path: String::new(),
            pkg_source_flag: 1,
            source_version: self.source_version,
            source_date: self.source_date.clone(),
            pkg_flags: self.pkg_flags,
            action_in_progress: i64::from(self.busy),
            manifest_hash: self.manifest_hash.clone(),
            ..common::package(&self.id)
        }
    }
}

/// Short words from a small alphabet, so that equal values, prefixes and case-only
/// differences are common; `%`, `_`, `\` and `'` test escaping.
fn word() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop::sample::select(vec!['a', 'A', 'b', 'B', 'z', '%', '_', '\\', '\'', ' ', '1']),
        0..4,
    )
    .prop_map(|c| c.into_iter().collect())
}

fn row() -> impl Strategy<Value = Row> {
    (
        word(),
        word(),
        proptest::option::of(prop::sample::select(vec![
            "2026-01-01T00:00:00Z",
            "2026-06-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        ])),
        proptest::option::of(word()),
        -3i64..4,
        prop::sample::select(vec![-5i64, 0, 1, 7, i64::from(i32::MAX)]),
        any::<bool>(),
    )
        .prop_map(|(name, description, date, hash, v, flags, busy)| Row {
            id: String::new(),
            name,
            description,
            source_date: date.map(str::to_owned),
            manifest_hash: hash,
            source_version: v,
            pkg_flags: flags,
            busy,
        })
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    proptest::collection::vec(row(), 0..14).prop_map(|mut rows| {
        for (i, r) in rows.iter_mut().enumerate() {
            // Upper-case IDs, as the column promises; their order differs from the insert order.
            r.id = format!("PS{:05X}", (i * 7919) % 1000);
        }
        rows
    })
}

fn property() -> impl Strategy<Value = String> {
    prop::sample::select(PROPS.to_vec()).prop_map(str::to_owned)
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        (-3i64..8).prop_map(Literal::Int),
        prop::sample::select(vec![-0.5f64, 1.0, 2.5]).prop_map(Literal::Float),
        word().prop_map(Literal::Text),
        prop::sample::select(vec!["ps00000", "PS0000A", "2026-06-01T00:00:00Z"]).prop_map(|s| Literal::Text(s.into())),
    ]
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        3 => property().prop_map(Operand::Property),
        3 => literal().prop_map(Operand::Literal),
        1 => (
            prop::sample::select(vec![TextFn::StartsWith, TextFn::EndsWith, TextFn::Contains]),
            property(),
            word()
        )
            .prop_map(|(f, p, w)| Operand::Text(f, p, w)),
        1 => property().prop_map(Operand::Lower),
        1 => property().prop_map(Operand::Upper),
    ]
}

fn op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Gt, CmpOp::Ge, CmpOp::Lt, CmpOp::Le])
}

fn filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        4 => (operand(), op(), operand()).prop_map(|(a, o, b)| Filter::Cmp(a, o, b)),
        1 => operand()
            .prop_filter("a literal is no condition", |o| !matches!(o, Operand::Literal(_)))
            .prop_map(Filter::Is),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Filter::Not(Box::new(a))),
        ]
    })
}

fn query() -> impl Strategy<Value = Query> {
    (
        proptest::option::of(filter()),
        proptest::collection::vec((property(), any::<bool>()), 0..3),
        proptest::option::of(0usize..6),
        0usize..4,
        proptest::option::of(proptest::sample::subsequence(PROPS.to_vec(), 1..4)),
    )
        .prop_map(|(filter, order, top, skip, select)| Query {
            filter,
            select: select.map(|s| s.into_iter().map(str::to_owned).collect()),
            order_by: order
                .into_iter()
                .map(|(property, descending)| OrderKey { property, descending })
                .collect(),
            top,
            skip,
        })
}

async fn load(db: &Db, rows: &[Row]) {
    for r in db.packages().await.unwrap() {
        db.delete_package(&r.package_id).await.unwrap();
    }
    for r in rows {
        db.insert_package(&r.stored()).await.unwrap();
    }
}

fn check(db: &Db, rt: &tokio::runtime::Runtime, cases: u32) {
    let view = view();
    let mut runner = common::runner(cases);
    runner
        .run(
            &(rows(), proptest::collection::vec(query(), 1..8)),
            |(rows, queries)| {
                rt.block_on(load(db, &rows));
                let mut objects: Vec<Map<String, Value>> = rows.iter().map(Row::object).collect();
                objects.sort_by(|a, b| a["PackageID"].as_str().cmp(&b["PackageID"].as_str()));
                for q in &queries {
                    let want = q.apply(objects.clone());
                    let got = rt.block_on(db.select(&view, q)).unwrap();
                    let filter = q.filter.as_ref().map(ToString::to_string);
                    prop_assert_eq!(got, want, "filter {:?}, query {:?}", filter, q);
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn sql_answers_as_the_evaluator_on_sqlite() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    check(&common::sqlite(&rt, &dir), &rt, 300);
}

#[test]
fn sql_answers_as_the_evaluator_on_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_pg, db) = common::postgres(&rt);
    check(&db, &rt, 200);
}
