//! JSON as pkgdist reads it from the network: as `serde_json` does, but an object that names
//! a key twice is refused. `serde_json` keeps the last of two (`{"Role": "ReadOnlyAnalyst",
//! "Role": "FullAdministrator"}` is a full administrator), and a proxy or log that reads the
//! first one sees another request than the server: the ambiguity is refused instead.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as JSON, refusing an object with a key given twice (at any depth).
pub fn from_slice_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0)
}

/// A JSON value whose objects have no repeated key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("the key {key:?} is given twice")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::from_slice_strict;

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        let ok = br#"{"a": 1, "b": [true, null, 1.5, -2, "x", {"a": 2}], "c": {"d": {}}}"#;
        assert_eq!(
            from_slice_strict(ok).unwrap(),
            serde_json::from_slice::<serde_json::Value>(ok).unwrap()
        );
        for bad in [
            &br#"{"Role": "ReadOnlyAnalyst", "Role": "FullAdministrator"}"#[..],
            br#"{"a": {"b": 1, "b": 2}}"#,
            br#"[{"x": 1}, {"y": 1, "y": 1}]"#,
        ] {
            let e = from_slice_strict(bad).unwrap_err().to_string();
            assert!(e.contains("given twice"), "{e}");
        }
        assert!(from_slice_strict(b"{\"a\": 1,}").is_err());
    }
}
