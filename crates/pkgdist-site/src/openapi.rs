//! The OpenAPI document of the management API, generated from the class catalog (the same
//! descriptions the server validates requests with), served at `/openapi.json` and committed
//! as `docs/api/openapi.json`; a test fails when the two differ.

use pkgdist_core::errors::ErrorKind;
use pkgdist_proto::catalog::{CLASSES, ClassDef, Ty};
use serde_json::{Map, Value, json};

fn schema(ty: Ty) -> Value {
    match ty {
        Ty::String => json!({"type": "string"}),
        Ty::StringArray => json!({"type": "array", "items": {"type": "string"}}),
        Ty::UInt32Array => json!({"type": "array", "items": {"type": "integer", "format": "uint32", "minimum": 0}}),
        Ty::UInt32 => json!({"type": "integer", "format": "uint32", "minimum": 0}),
        Ty::SInt32 => json!({"type": "integer", "format": "int32"}),
        Ty::UInt64 => json!({"type": "integer", "format": "uint64", "minimum": 0}),
        Ty::Boolean => json!({"type": "boolean"}),
        Ty::DateTime => json!({"type": "string", "format": "date-time"}),
        Ty::ObjectArray => json!({"type": "array", "items": {"type": "object", "required": ["@odata.type"]}}),
    }
}

fn class_schema(c: &ClassDef) -> Value {
    let mut props = Map::new();
    for p in c.props {
        let mut s = schema(p.ty);
        if let Value::Object(m) = &mut s {
            if p.nullable
                && let Some(ty) = m.get("type").cloned()
            {
                m.insert("type".into(), json!([ty, "null"]));
            }
            m.insert("description".into(), json!(p.doc));
            if !p.writable {
                m.insert("readOnly".into(), json!(true));
            }
        }
        props.insert(p.name.into(), s);
    }
    props.insert(
        "@odata.etag".into(),
        json!({"type": "string", "readOnly": true, "description": "The key values joined by ';'."}),
    );
    json!({"type": "object", "description": c.doc, "properties": props})
}

fn write_schema(c: &ClassDef, creating: bool) -> Value {
    let mut props = Map::new();
    for p in c
        .props
        .iter()
        .filter(|p| p.writable && (creating || !c.key.contains(&p.name)))
    {
        let mut s = schema(p.ty);
        if let Value::Object(m) = &mut s {
            m.insert("description".into(), json!(p.doc));
        }
        props.insert(p.name.into(), s);
    }
    let required: Vec<&str> = if creating {
        c.props.iter().filter(|p| p.required).map(|p| p.name).collect()
    } else {
        vec![]
    };
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn error_responses() -> Value {
    let codes: Vec<Value> = ErrorKind::ALL.iter().map(|k| json!(k.name())).collect();
    json!({
        "default": {
            "description": "Failure: a non-zero ReturnValue with an SMS_ExtendedStatus (see docs/errors.md).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            "x-error-codes": codes,
        }
    })
}

fn op(summary: String, body: Option<Value>, ok_status: &str, ok_schema: Value) -> Value {
    let mut o = json!({
        "summary": summary,
        "security": [{"bearer": []}, {"basic": []}],
        "responses": error_responses(),
    });
    o["responses"][ok_status] = if ok_status == "204" {
        json!({"description": "Done; no body"})
    } else {
        json!({"description": "Success", "content": {"application/json": {"schema": ok_schema}}})
    };
    if let Some(b) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": b}}});
    }
    o
}

fn key_path(c: &ClassDef) -> String {
    match c.key {
        [] => format!("/AdminService/wmi/{}", c.name),
        [_] => format!("/AdminService/wmi/{}('{{key}}')", c.name),
        keys => {
            let inner: Vec<String> = keys.iter().map(|k| format!("{k}='{{{k}}}'")).collect();
            format!("/AdminService/wmi/{}({})", c.name, inner.join(","))
        }
    }
}

fn key_params(c: &ClassDef) -> Value {
    let names: Vec<&str> = if c.key.len() == 1 { vec!["key"] } else { c.key.to_vec() };
    Value::Array(
        names
            .iter()
            .map(|n| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect(),
    )
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let ok_result = json!({"type": "object", "properties": {"ReturnValue": {"type": "integer", "const": 0}}});
    // A GET by key answers a collection of one, as the real route does.
    let list_of = |name: &str| json!({"type": "object", "properties": {"@odata.context": {"type": "string"}, "value": {"type": "array", "items": reference(name)}}});
    let query_params = json!([
        {"name": "$filter", "in": "query", "schema": {"type": "string"}, "description": "eq ne gt ge lt le and or not, startswith/endswith/contains, tolower/toupper"},
        {"name": "$select", "in": "query", "schema": {"type": "string"}},
        {"name": "$orderby", "in": "query", "schema": {"type": "string"}},
        {"name": "$top", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "$skip", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    ]);
    for c in CLASSES {
        schemas.insert(c.name.into(), class_schema(c));
        let mut coll = json!({"get": op(format!("List {} instances", c.name), None, "200", list_of(c.name))});
        coll["get"]["parameters"] = query_params.clone();
        if c.create {
            coll["post"] = op(
                format!("Create a {}", c.name),
                Some(write_schema(c, true)),
                "201",
                reference(c.name),
            );
        }
        paths.insert(format!("/AdminService/wmi/{}", c.name), coll);
        if !c.key.is_empty() {
            let mut count = op(
                format!("How many {} instances $filter selects (text)", c.name),
                None,
                "200",
                json!({"type": "integer"}),
            );
            count["parameters"] = json!([query_params[0].clone()]);
            count["responses"]["200"] =
                json!({"description": "The number", "content": {"text/plain": {"schema": {"type": "integer"}}}});
            paths.insert(format!("/AdminService/wmi/{}/$count", c.name), json!({"get": count}));
        }
        if c.key.is_empty() {
            // A class of static methods only.
        } else {
            let mut inst =
                json!({"get": op(format!("Get one {} (a collection of one)", c.name), None, "200", list_of(c.name))});
            if c.update {
                inst["patch"] = op(
                    format!("Change a {}: the writable properties given", c.name),
                    Some(write_schema(c, false)),
                    "200",
                    reference(c.name),
                );
                inst["put"] = op(
                    format!(
                        "Change a {}: the whole object as read; unchanged properties are ignored, a changed read-only one is refused",
                        c.name
                    ),
                    Some(class_schema(c)),
                    "200",
                    reference(c.name),
                );
            }
            if c.delete {
                inst["delete"] = op(format!("Delete a {}", c.name), None, "204", Value::Null);
            }
            inst["parameters"] = key_params(c);
            paths.insert(key_path(c), inst);
        }
        for m in c.methods {
            let mut props = Map::new();
            for p in m.params {
                let mut s = schema(p.ty);
                if let Value::Object(o) = &mut s {
                    o.insert("description".into(), json!(p.doc));
                }
                props.insert(p.name.into(), s);
            }
            let required: Vec<&str> = m.params.iter().filter(|p| p.required).map(|p| p.name).collect();
            let body =
                json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
            let mut item =
                json!({"post": op(format!("{}.{}: {}", c.name, m.name, m.doc), Some(body), "201", ok_result.clone())});
            if m.changes_nothing && !m.instance {
                // Also by GET, each parameter in the query string (JSON when not a string).
                let mut get = op(
                    format!("{}.{} by GET: {}", c.name, m.name, m.doc),
                    None,
                    "201",
                    ok_result.clone(),
                );
                get["parameters"] = Value::Array(
                    m.params
                        .iter()
                        .map(|p| json!({"name": p.name, "in": "query", "required": p.required, "description": p.doc, "schema": {"type": "string"}}))
                        .collect(),
                );
                item["get"] = get;
            }
            let path = if m.instance {
                item["parameters"] = key_params(c);
                format!("{}/AdminService.{}", key_path(c), m.name)
            } else {
                format!("/AdminService/wmi/{}.{}", c.name, m.name)
            };
            paths.insert(path, item);
        }
    }
    paths.insert(
        "/AdminService/wmi/$metadata".into(),
        json!({"get": {
            "summary": "The OData v4 service description (CSDL XML), generated from the catalog",
            "security": [{"bearer": []}, {"basic": []}],
            "responses": {"200": {"description": "CSDL", "content": {"application/xml": {"schema": {"type": "string"}}}}}
        }}),
    );
    paths.insert(
        "/AdminService/wmi/".into(),
        json!({"get": op(
            "The service document: every class with instances, as an entity set".into(),
            None,
            "200",
            json!({"type": "object", "properties": {"@odata.context": {"type": "string"}, "value": {"type": "array", "items": {
                "type": "object", "properties": {"name": {"type": "string"}, "kind": {"type": "string"}, "url": {"type": "string"}}
            }}}}),
        )}),
    );
    schemas.insert(
        "ErrorBody".into(),
        json!({
            "type": "object",
            "properties": {
                "ReturnValue": {"type": "integer", "description": "Non-zero: see docs/errors.md"},
                "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
                "ExtendedStatus": {"type": "object", "properties": {
                    "__CLASS": {"type": "string", "const": "SMS_ExtendedStatus"},
                    "ErrorCode": {"type": "integer"}, "Description": {"type": "string"}, "Operation": {"type": "string"},
                    "ParameterInfo": {"type": "string"}, "ObjectInfo": {"type": "string"}, "ProviderName": {"type": "string"}
                }}
            }
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pkgdist management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "ConfigMgr AdminService-style WMI route: classes, OData queries, instance and static methods returning ReturnValue 0 or an SMS_ExtendedStatus error."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic", "description": "The token as the password (any user name); taken from loopback only"}
            }
        }
    })
}
