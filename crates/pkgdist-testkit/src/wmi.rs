//! Reading the WMI route's answers in tests.

use serde_json::Value;

/// The entity of a GET by key on `path` (the route answers `{"value": [entity]}`, as the
/// real AdminService does); any other answer as it is. A path names an instance when it has
/// a key in parentheses, percent-encoded or not.
pub fn entity(path: &str, v: Value) -> Value {
    let keyed = path
        .split('?')
        .next()
        .is_some_and(|p| p.contains('(') || p.contains("%28"));
    match v.get("value").and_then(Value::as_array) {
        Some(a) if keyed && a.len() == 1 => a[0].clone(),
        _ => v,
    }
}
