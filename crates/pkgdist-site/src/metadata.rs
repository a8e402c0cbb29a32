//! `GET /AdminService/wmi/$metadata`: the OData v4 service description (CSDL XML), generated
//! from the class catalog as the OpenAPI document is, so the two cannot disagree with what the
//! route does. Scripts read it to see that a class or method exists before they call it.
//!
//! - Every class with a key is an entity type (its key, every property with its EDM type) and
//!   an entity set of the same name in the container `AdminService`.
//! - An instance method is an action bound to the class (`Class('k')/AdminService.M`); a static
//!   method (`Class.M`) an action bound to the class's collection (`Class/AdminService.M`), and
//!   also, as the real route describes it, an unbound action `Class.M` with an action import of
//!   the same name (`<ActionImport Name="SMS_Identification.GetSiteID" …/>`). Strictly, CSDL
//!   names have no dots; the real route's have, scripts look for them, and the OASIS reader
//!   the tests use takes them. A class of static methods only (`SMS_ScheduleMethods`, no key)
//!   is an abstract entity type with no entity set.
//! - Methods answer an open `MethodResult` (`ReturnValue` and the method's out-parameters);
//!   embedded objects (schedule tokens) are an open `EmbeddedObject`.

use pkgdist_proto::catalog::{self, ClassDef, MethodDef, Ty};

/// The namespace, as the real route's (`#AdminService.SMS_…` in `@odata.type`).
pub const NAMESPACE: &str = "AdminService";

/// The EDM type of a catalog type.
fn edm(ty: Ty) -> String {
    match ty {
        Ty::String => "Edm.String".into(),
        Ty::DateTime => "Edm.DateTimeOffset".into(),
        // UInt32 does not fit Edm.Int32.
        Ty::UInt32 | Ty::UInt64 => "Edm.Int64".into(),
        Ty::SInt32 => "Edm.Int32".into(),
        Ty::Boolean => "Edm.Boolean".into(),
        Ty::StringArray => "Collection(Edm.String)".into(),
        Ty::UInt32Array => "Collection(Edm.Int64)".into(),
        Ty::ObjectArray => format!("Collection({NAMESPACE}.EmbeddedObject)"),
    }
}

/// `s` escaped for an XML attribute value.
fn attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn entity_type(out: &mut String, class: &ClassDef) {
    if class.key.is_empty() {
        out.push_str(&format!(
            "      <EntityType Name=\"{}\" Abstract=\"true\"/>\n",
            attr(class.name)
        ));
        return;
    }
    out.push_str(&format!(
        "      <EntityType Name=\"{}\">\n        <Key>",
        attr(class.name)
    ));
    for k in class.key {
        out.push_str(&format!("<PropertyRef Name=\"{}\"/>", attr(k)));
    }
    out.push_str("</Key>\n");
    for p in class.props {
        let nullable = if class.key.contains(&p.name) {
            " Nullable=\"false\""
        } else {
            ""
        };
        out.push_str(&format!(
            "        <Property Name=\"{}\" Type=\"{}\"{nullable}/>\n",
            attr(p.name),
            edm(p.ty)
        ));
    }
    out.push_str("      </EntityType>\n");
}

/// The action of a method, bound to an instance or (a static method) to the collection.
fn bound_action(out: &mut String, class: &ClassDef, m: &MethodDef) {
    let binding = if m.instance {
        format!("{NAMESPACE}.{}", class.name)
    } else {
        format!("Collection({NAMESPACE}.{})", class.name)
    };
    out.push_str(&format!(
        "      <Action Name=\"{}\" IsBound=\"true\">\n        <Parameter Name=\"bindingParameter\" Type=\"{}\" Nullable=\"false\"/>\n",
        attr(m.name),
        attr(&binding)
    ));
    parameters_and_result(out, m);
}

/// The unbound action `Class.Method` of a static method, for its action import, as the real
/// route names it.
fn import_action(out: &mut String, class: &ClassDef, m: &MethodDef) {
    out.push_str(&format!(
        "      <Action Name=\"{}.{}\">\n",
        attr(class.name),
        attr(m.name)
    ));
    parameters_and_result(out, m);
}

/// A method's parameters, its result type and the end of its action.
fn parameters_and_result(out: &mut String, m: &MethodDef) {
    for p in m.params {
        let nullable = if p.required { " Nullable=\"false\"" } else { "" };
        out.push_str(&format!(
            "        <Parameter Name=\"{}\" Type=\"{}\"{nullable}/>\n",
            attr(p.name),
            edm(p.ty)
        ));
    }
    out.push_str(&format!(
        "        <ReturnType Type=\"{NAMESPACE}.MethodResult\"/>\n      </Action>\n"
    ));
}

/// The whole document.
pub fn document() -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <edmx:Edmx Version=\"4.0\" xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\">\n  <edmx:DataServices>\n",
    );
    out.push_str(&format!(
        "    <Schema Namespace=\"{NAMESPACE}\" xmlns=\"http://docs.oasis-open.org/odata/ns/edm\">\n"
    ));
    out.push_str(
        "      <ComplexType Name=\"MethodResult\" OpenType=\"true\">\n        <Property Name=\"ReturnValue\" Type=\"Edm.Int64\" Nullable=\"false\"/>\n      </ComplexType>\n      <ComplexType Name=\"EmbeddedObject\" OpenType=\"true\"/>\n",
    );
    for class in catalog::CLASSES {
        entity_type(&mut out, class);
    }
    for class in catalog::CLASSES {
        for m in class.methods {
            bound_action(&mut out, class, m);
            if !m.instance {
                import_action(&mut out, class, m);
            }
        }
    }
    out.push_str(&format!("      <EntityContainer Name=\"{NAMESPACE}\">\n"));
    for class in catalog::CLASSES.iter().filter(|c| !c.key.is_empty()) {
        out.push_str(&format!(
            "        <EntitySet Name=\"{0}\" EntityType=\"{NAMESPACE}.{0}\"/>\n",
            attr(class.name)
        ));
    }
    for class in catalog::CLASSES {
        for m in class.methods.iter().filter(|m| !m.instance) {
            out.push_str(&format!(
                "        <ActionImport Name=\"{0}.{1}\" Action=\"{NAMESPACE}.{0}.{1}\"/>\n",
                attr(class.name),
                attr(m.name)
            ));
        }
    }
    out.push_str("      </EntityContainer>\n    </Schema>\n  </edmx:DataServices>\n</edmx:Edmx>\n");
    out
}
