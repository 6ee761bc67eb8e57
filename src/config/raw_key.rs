//! A key defined in the file (`keys:`): the admin API's `KeySpec`, with `id` required, plus the
//! secret `key` that only the file may give (the API generates secrets).
//!
//! One `KeySpec` serves both, and serde's `flatten` cannot add `key` to it: under
//! `deny_unknown_fields` a flattened struct refuses the outer fields, and `flatten` buffers the
//! entry, which loses the path and line of a problem inside it. So an entry is read by hand, as a
//! derived struct would read it: `id` and `key` are taken out of the map, every other field goes
//! through the same map to `KeySpec`'s own derived code (paths and lines intact), an unknown
//! field is refused with the whole list of names (`id`, `key`, then `KeySpec`'s), and a missing
//! `id` or `key` is reported as missing.

use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::limits::keys::KeySpec;

/// A `keys:` entry. `spec.id` is always `Some`.
#[derive(Debug)]
pub struct RawKey {
    /// The secret clients send, from the environment: `${TEAM_A_KEY}`.
    pub key: String,
    pub spec: KeySpec,
}

impl RawKey {
    /// The stable id (in records and metrics; never the secret).
    pub fn id(&self) -> &str {
        self.spec.id.as_deref().unwrap_or_default()
    }
}

/// The names a `keys:` entry takes, in the order serde lists them: `id`, `key`, then the rest of
/// `KeySpec`'s, as its derived code names them.
fn fields() -> &'static [&'static str] {
    static FIELDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut all = vec!["id", "key"];
        all.extend(spec_fields().iter().filter(|f| **f != "id"));
        all
    })
}

/// `KeySpec`'s field names, asked of its derived `Deserialize` (which passes them to
/// `deserialize_struct`) by a deserializer that only listens.
fn spec_fields() -> &'static [&'static str] {
    struct Listen<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Listen<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only listening"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("only listening"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = KeySpec::deserialize(Listen(&mut fields));
    fields
}

impl<'de> Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawKey, D::Error> {
        d.deserialize_struct("RawKey", fields(), EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = RawKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct RawKey")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawKey, A::Error> {
        let mut entry = Entry {
            map,
            id: None,
            key: None,
        };
        let spec = KeySpec::deserialize(de::value::MapAccessDeserializer::new(&mut entry))?;
        let id = entry.id.ok_or_else(|| de::Error::missing_field("id"))?;
        let key = entry.key.ok_or_else(|| de::Error::missing_field("key"))?;
        Ok(RawKey {
            key,
            spec: KeySpec { id: Some(id), ..spec },
        })
    }
}

/// The entry's map as `KeySpec` sees it: without `id` and `key`, which it keeps.
struct Entry<A> {
    map: A,
    id: Option<String>,
    key: Option<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Entry<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        loop {
            let name = match self.map.next_key_seed(Name)? {
                None => return Ok(None),
                Some(n) => n,
            };
            let slot = match name {
                "id" => &mut self.id,
                "key" => &mut self.key,
                spec => return seed.deserialize(spec.into_deserializer()).map(Some),
            };
            if slot.is_some() {
                return Err(de::Error::duplicate_field(name));
            }
            *slot = Some(self.map.next_value()?);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A field name of an entry; any other is refused as a derived struct refuses it.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<&'static str, E> {
        fields()
            .iter()
            .find(|f| **f == v)
            .copied()
            .ok_or_else(|| E::unknown_field(v, fields()))
    }
}
