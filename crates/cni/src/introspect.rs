//! The keys a configuration struct accepts, read from its `Deserialize` implementation: a
//! deserializer that records the field list serde hands to `deserialize_struct` and stops.
//! Tests use it to prove every accepted key is documented.

use serde::de::{self, Deserialize, Deserializer, Visitor};

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field list recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

struct Recorder<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Recorder<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The JSON keys `T` reads (after `rename`s), in declaration order; empty for non-structs.
pub fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut out: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder(&mut out));
    out
}

/// Keys of `T` that `doc` never names in code spans: a key counts as documented when it is a
/// whole segment of a `` `...` `` span (`` `isGateway` ``, `` `ipam.addresses[].address` ``).
pub fn undocumented<'de, T: Deserialize<'de>>(doc: &str) -> Vec<&'static str> {
    let named: std::collections::HashSet<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|span| span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')))
        .collect();
    fields::<T>()
        .iter()
        .copied()
        .filter(|k| !named.contains(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Example {
        is_gateway: bool,
        #[serde(rename = "macspoofchk")]
        spoof: bool,
    }

    #[test]
    fn records_renamed_field_names_and_finds_the_undocumented_ones() {
        assert_eq!(fields::<Example>(), ["isGateway", "macspoofchk"]);
        assert_eq!(
            undocumented::<Example>("| `isGateway` | macspoofchk |"),
            ["macspoofchk"]
        );
        assert!(undocumented::<Example>("`a.isGateway`, `x[].macspoofchk`").is_empty());
    }
}
