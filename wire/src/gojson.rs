//! Request bodies decoded as Consul decodes them: Go's `encoding/json`.
//!
//! Go matches a JSON object's keys to a struct's fields without case (`"name"` fills `Name`,
//! `"id"` fills `ID`), takes `null` as "leave the zero value" (so `"Tags": null` is no tags),
//! and ignores keys the struct does not have. Consul's agent endpoints also take the
//! snake_case spelling of a field (`"deregister_critical_service_after"`), which it
//! translates before decoding. [`from_slice`] does all of that for any `Deserialize` type
//! whose field names are Consul's (PascalCase, `ID`, `TTL`, ...), by handing serde a
//! deserializer over a parsed [`Value`] that renames each object key to the field it matches
//! when serde asks for a struct (serde names the fields it expects). Maps (`Meta`,
//! `NodeMeta`) keep their keys as written.

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::Deserializer;
use serde_json::{Map, Value};

/// Decodes `bytes` into `T` as Go's `encoding/json` would fill the matching Go struct.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let value: Value = serde_json::from_slice(bytes)?;
    from_value(value)
}

/// Decodes an already parsed JSON value, as [`from_slice`] does.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(GoValue(value))
}

/// The field of `fields` that `key` names: the exact spelling first, then without case, then
/// without case and underscores (Consul's snake_case translation).
fn match_field(key: &str, fields: &'static [&'static str]) -> Option<&'static str> {
    if let Some(exact) = fields.iter().find(|f| **f == key) {
        return Some(exact);
    }
    if let Some(folded) = fields.iter().find(|f| f.eq_ignore_ascii_case(key)) {
        return Some(folded);
    }
    let squashed: String = key.chars().filter(|c| *c != '_').collect();
    fields
        .iter()
        .find(|f| f.eq_ignore_ascii_case(&squashed))
        .copied()
}

/// An object's keys renamed to the fields they match, `null` members left out (the field
/// keeps its default, as Go leaves it at its zero value).
fn rename_keys(object: Map<String, Value>, fields: &'static [&'static str]) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        match match_field(&key, fields) {
            Some(field) => {
                out.insert(field.to_owned(), value);
            }
            None => {
                out.entry(key).or_insert(value);
            }
        }
    }
    out
}

struct GoValue(Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for GoValue {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

fn visit_object<'de, V: Visitor<'de>>(
    object: Map<String, Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let entries = object.into_iter().map(|(k, v)| (k, GoValue(v)));
    let mut access = de::value::MapDeserializer::new(entries);
    let value = visitor.visit_map(&mut access)?;
    access.end()?;
    Ok(value)
}

fn visit_array<'de, V: Visitor<'de>>(
    array: Vec<Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut access = de::value::SeqDeserializer::new(array.into_iter().map(GoValue));
    let value = visitor.visit_seq(&mut access)?;
    access.end()?;
    Ok(value)
}

impl<'de> Deserializer<'de> for GoValue {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => n.deserialize_any(visitor),
            Value::String(s) => visitor.visit_string(s),
            Value::Array(a) => visit_array(a, visitor),
            Value::Object(o) => visit_object(o, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(GoValue(other)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            // Go: `null` for a slice is a nil (empty) slice.
            Value::Null => visit_array(Vec::new(), visitor),
            other => GoValue(other).deserialize_any(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visit_object(Map::new(), visitor),
            other => GoValue(other).deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(object) => visit_object(rename_keys(object, fields), visitor),
            Value::Null => visit_object(Map::new(), visitor),
            other => GoValue(other).deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Service {
        #[serde(rename = "ID")]
        id: String,
        name: String,
        tags: Vec<String>,
        port: u16,
        meta: BTreeMap<String, String>,
        check: Option<Check>,
        checks: Vec<Check>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Check {
        #[serde(rename = "TTL")]
        ttl: String,
        deregister_critical_service_after: String,
    }

    #[test]
    fn keys_match_fields_without_case_and_underscores() {
        let body = br#"{"id":"web1","name":"web","TAGS":["a"],"port":80,
            "meta":{"Version":"1","version":"2"},
            "check":{"ttl":"10s","deregister_critical_service_after":"1m"},
            "unknown":{"x":1}}"#;
        let service: Service = from_slice(body).expect("decodes");
        assert_eq!(service.id, "web1");
        assert_eq!(service.name, "web");
        assert_eq!(service.tags, ["a"]);
        assert_eq!(service.port, 80);
        assert_eq!(service.meta.len(), 2, "map keys are kept as written");
        let check = service.check.expect("check given");
        assert_eq!(check.ttl, "10s");
        assert_eq!(check.deregister_critical_service_after, "1m");
    }

    #[test]
    fn null_is_the_zero_value() {
        let body =
            br#"{"Name":"web","Tags":null,"Meta":null,"Check":null,"Checks":null,"Port":null}"#;
        let service: Service = from_slice(body).expect("decodes");
        assert_eq!(
            service,
            Service {
                name: "web".to_owned(),
                ..Service::default()
            }
        );
        let top: Vec<Check> = from_slice(b"null").expect("null list");
        assert!(top.is_empty());
    }

    #[test]
    fn wrong_types_and_syntax_are_errors() {
        assert!(from_slice::<Service>(br#"{"Port":"eighty"}"#).is_err());
        assert!(from_slice::<Service>(br#"{"Port":70000}"#).is_err());
        assert!(from_slice::<Service>(br#"{"Name":"web""#).is_err());
    }
}
