//! `$filter` against the class's property types: `Name eq 5` or `Priority eq 'high'` compare
//! values of different types, which are never equal (so such a filter silently selects
//! nothing, or everything under `ne`). They are refused instead, naming the property and its
//! type, as a mistyped property name is.

use pkgdist_core::errors::ErrorKind;
use pkgdist_core::odata::{Filter, Literal, Operand};
use pkgdist_proto::catalog::{ClassDef, Ty};

use crate::error::{ApiError, ApiResult};

/// Checks every comparison of `filter` between a property and a literal, and every text
/// function's property.
pub fn check(class: &ClassDef, filter: &Filter) -> ApiResult<()> {
    match filter {
        Filter::Or(a, b) | Filter::And(a, b) => {
            check(class, a)?;
            check(class, b)
        }
        Filter::Not(f) => check(class, f),
        Filter::Is(o) => operand(class, o),
        Filter::Cmp(a, _, b) => {
            operand(class, a)?;
            operand(class, b)?;
            match (a, b) {
                (Operand::Property(p), Operand::Literal(l)) | (Operand::Literal(l), Operand::Property(p)) => {
                    compared(class, p, l)
                }
                _ => Ok(()),
            }
        }
    }
}

/// Text functions and case folding take text properties only.
fn operand(class: &ClassDef, o: &Operand) -> ApiResult<()> {
    let (p, what) = match o {
        Operand::Text(f, p, _) => (p, format!("{f:?}").to_lowercase()),
        Operand::Lower(p) => (p, "tolower".to_owned()),
        Operand::Upper(p) => (p, "toupper".to_owned()),
        Operand::Property(_) | Operand::Literal(_) => return Ok(()),
    };
    match ty_of(class, p) {
        Some(Ty::String | Ty::DateTime) | None => Ok(()),
        Some(ty) => Err(mismatch(class, p, ty, &format!("{what}(), which takes text"))),
    }
}

fn compared(class: &ClassDef, p: &str, l: &Literal) -> ApiResult<()> {
    let Some(ty) = ty_of(class, p) else {
        return Ok(());
    };
    let fits = matches!(
        (ty, l),
        (_, Literal::Null)
            | (Ty::String | Ty::DateTime, Literal::Text(_))
            | (
                Ty::UInt32 | Ty::UInt64 | Ty::SInt32,
                Literal::Int(_) | Literal::Float(_)
            )
            | (Ty::Boolean, Literal::Bool(_))
    );
    if fits {
        Ok(())
    } else {
        let given = match l {
            Literal::Text(t) => format!("the text '{t}'"),
            Literal::Int(n) => format!("the number {n}"),
            Literal::Float(x) => format!("the number {x}"),
            Literal::Bool(b) => format!("{b}"),
            Literal::Null => "null".to_owned(),
        };
        Err(mismatch(class, p, ty, &given))
    }
}

fn ty_of(class: &ClassDef, p: &str) -> Option<Ty> {
    class.prop(p).map(|d| d.ty)
}

fn mismatch(class: &ClassDef, p: &str, ty: Ty, given: &str) -> ApiError {
    let hint = match ty {
        Ty::String | Ty::DateTime => "quote text: Name eq 'x'",
        Ty::Boolean => "write true or false",
        _ => "write a number without quotes",
    };
    ApiError::new(
        ErrorKind::MalformedQuery,
        format!(
            "$filter compares {}.{p}, a {}, with {given}; {hint}",
            class.name,
            ty.name()
        ),
    )
    .param(p)
}

#[cfg(test)]
mod tests {
    use pkgdist_core::odata::Filter;

    fn check(f: &str) -> Result<(), String> {
        let class = pkgdist_proto::catalog::class("SMS_Package").expect("a class");
        let filter = Filter::parse(f, &|p| class.prop(p).is_some()).expect("parses");
        super::check(class, &filter).map_err(|e| e.message)
    }

    #[test]
    fn types_must_match() {
        for ok in [
            "Name eq 'x'",
            "Priority eq 2",
            "SourceVersion gt 1 and Name ne null",
            "startswith(Name,'Drivers') eq true",
            "SourceDate gt 2026-01-01T00:00:00Z",
            "tolower(Name) eq 'x'",
            "not (PackageSize lt 10.5)",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
        for (bad, names) in [
            ("Name eq 5", "SMS_Package.Name, a String, with the number 5"),
            (
                "Priority eq 'high'",
                "SMS_Package.Priority, a UInt32, with the text 'high'",
            ),
            ("'x' eq SourceVersion", "SourceVersion, a UInt32"),
            ("Name eq 'a' or PkgFlags eq true", "PkgFlags, a UInt32, with true"),
            ("startswith(Priority,'1')", "Priority, a UInt32, with startswith()"),
            ("toupper(SourceVersion) eq 'A'", "toupper()"),
        ] {
            let e = check(bad).expect_err(bad);
            assert!(e.contains(names), "{bad}: {e}");
        }
    }
}
