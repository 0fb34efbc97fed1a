//! Typing a parsed JSON value while keeping the JSON path of the first
//! error (`resources[0].spec.http[0].mtach`).
//!
//! Why not `serde_path_to_error`: it wraps every visitor and seed in its own
//! generic types, so each derived visitor of the config mirrors was compiled
//! twice (181 KB of the route filter, 217 KB of mesh; docs/size.md). The
//! resources are already `serde_json::Value`s when they are typed, so this
//! deserializer walks the value itself: maps, arrays, options and enums keep
//! a chain of path segments on the stack, everything else is handed to
//! `&Value`'s own deserializer (so the messages are serde_json's). Only its
//! `MapAccess` and `SeqAccess` are generic, over the seed, and they are a few
//! lines each.

use std::cell::Cell;
use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Unexpected, Visitor};
use serde_json::{Error, Map, Value};

/// Types `value` as `T`; an error comes with the path where it arose
/// (empty for the value itself) as serde_path_to_error wrote it: keys
/// joined by `.`, indexes as `[i]`.
pub(super) fn deserialize<T: de::DeserializeOwned>(value: &Value) -> Result<T, (String, Error)> {
    let track = Track::default();
    let root = Tracked {
        value,
        chain: &Chain::Root,
        track: &track,
    };
    T::deserialize(root).map_err(|e| (track.path.take().unwrap_or_default(), e))
}

/// Where a value is, as links from it up to the root.
enum Chain<'a> {
    Root,
    Seq { parent: &'a Chain<'a>, index: usize },
    Key { parent: &'a Chain<'a>, key: &'a str },
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chain::Root => Ok(()),
            Chain::Seq { parent, index } => write!(f, "{parent}[{index}]"),
            Chain::Key {
                parent: Chain::Root,
                key,
            } => f.write_str(key),
            Chain::Key { parent, key } => write!(f, "{parent}.{key}"),
        }
    }
}

/// The path of the first error: errors return from the innermost value
/// outwards, so the first one recorded is where it arose.
#[derive(Default)]
struct Track {
    path: Cell<Option<String>>,
}

impl Track {
    fn trigger(&self, chain: &Chain<'_>, err: Error) -> Error {
        let first = self.path.take();
        self.path.set(first.or_else(|| Some(chain.to_string())));
        err
    }
}

#[derive(Clone, Copy)]
struct Tracked<'a, 'de> {
    value: &'de Value,
    chain: &'a Chain<'a>,
    track: &'a Track,
}

impl<'a, 'de> Tracked<'a, 'de> {
    fn map<V: Visitor<'de>>(self, map: &'de Map<String, Value>, v: V) -> Result<V::Value, Error> {
        let mut access = MapAccess {
            entries: map.iter(),
            pending: None,
            chain: self.chain,
            track: self.track,
        };
        let out = v.visit_map(&mut access)?;
        // As serde_json's own deserializer: a visitor that stopped early
        // (never the derived ones) is an error, not a truncation.
        match access.entries.len() {
            0 => Ok(out),
            _ => Err(de::Error::invalid_length(
                map.len(),
                &"fewer elements in map",
            )),
        }
    }

    fn seq<V: Visitor<'de>>(self, items: &'de [Value], v: V) -> Result<V::Value, Error> {
        let mut access = SeqAccess {
            items: items.iter().enumerate(),
            chain: self.chain,
            track: self.track,
        };
        let out = v.visit_seq(&mut access)?;
        match access.items.len() {
            0 => Ok(out),
            _ => Err(de::Error::invalid_length(
                items.len(),
                &"fewer elements in array",
            )),
        }
    }

    /// serde_json's own "invalid type" error for this value. Maps, arrays
    /// and enums are never handed to `&Value`'s deserializer: that would
    /// compile every derived visitor a second time, for its accessors.
    fn invalid_type(self, expected: &dyn de::Expected) -> Error {
        let unexpected = match self.value {
            Value::Null => Unexpected::Unit,
            Value::Bool(b) => Unexpected::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Unexpected::Unsigned(u),
                (None, Some(i), _) => Unexpected::Signed(i),
                (None, None, f) => Unexpected::Float(f.unwrap_or_default()),
            },
            Value::String(s) => Unexpected::Str(s),
            Value::Array(_) => Unexpected::Seq,
            Value::Object(_) => Unexpected::Map,
        };
        de::Error::invalid_type(unexpected, expected)
    }

    fn tracked<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|e| self.track.trigger(self.chain, e))
    }
}

/// Scalars go to `&Value`'s deserializer as they are.
macro_rules! forward_to_value {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.tracked(self.value.$method(visitor))
        }
    )*};
}

impl<'de> Deserializer<'de> for Tracked<'_, 'de> {
    type Error = Error;

    forward_to_value! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.value {
            Value::Object(map) => self.map(map, visitor),
            Value::Array(items) => self.seq(items, visitor),
            scalar => scalar.deserialize_any(visitor),
        };
        self.tracked(result)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => self.tracked(visitor.visit_none()),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.tracked(self.value.deserialize_unit_struct(name, visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.value {
            Value::Array(items) => self.seq(items, visitor),
            _ => Err(self.invalid_type(&visitor)),
        };
        self.tracked(result)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.value {
            Value::Object(map) => self.map(map, visitor),
            _ => Err(self.invalid_type(&visitor)),
        };
        self.tracked(result)
    }

    /// A message is an object only: serde_json would also read it from an
    /// array, field by field, which Istio's protojson refuses.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // As serde_json: `"variant"`, or `{"variant": content}` whose
        // content's path goes on from the variant's name.
        let result = match self.value {
            Value::String(variant) => visitor.visit_enum(EnumAccess {
                variant,
                content: None,
            }),
            Value::Object(map) => match map.iter().next() {
                Some((variant, value)) if map.len() == 1 => visitor.visit_enum(EnumAccess {
                    variant,
                    content: Some(Tracked {
                        value,
                        chain: &Chain::Key {
                            parent: self.chain,
                            key: variant,
                        },
                        track: self.track,
                    }),
                }),
                _ => Err(de::Error::invalid_value(
                    Unexpected::Map,
                    &"map with a single key",
                )),
            },
            _ => Err(self.invalid_type(&"string or map")),
        };
        self.tracked(result)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct MapAccess<'a, 'de> {
    entries: serde_json::map::Iter<'de>,
    pending: Option<(&'de String, &'de Value)>,
    chain: &'a Chain<'a>,
    track: &'a Track,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((key, value));
        let chain = Chain::Key {
            parent: self.chain,
            key,
        };
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
            .map_err(|e| self.track.trigger(&chain, e))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("value is missing"));
        };
        // The seed's own errors too (a duration that is not one) are the
        // value's, not its map's.
        let chain = Chain::Key {
            parent: self.chain,
            key,
        };
        seed.deserialize(Tracked {
            value,
            chain: &chain,
            track: self.track,
        })
        .map_err(|e| self.track.trigger(&chain, e))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct SeqAccess<'a, 'de> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Value>>,
    chain: &'a Chain<'a>,
    track: &'a Track,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((index, value)) = self.items.next() else {
            return Ok(None);
        };
        let chain = Chain::Seq {
            parent: self.chain,
            index,
        };
        seed.deserialize(Tracked {
            value,
            chain: &chain,
            track: self.track,
        })
        .map(Some)
        .map_err(|e| self.track.trigger(&chain, e))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct EnumAccess<'a, 'de> {
    variant: &'de str,
    content: Option<Tracked<'a, 'de>>,
}

impl<'a, 'de> de::EnumAccess<'de> for EnumAccess<'a, 'de> {
    type Error = Error;
    type Variant = Variant<'a, 'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Error> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, Variant(self.content)))
    }
}

/// A variant's content: none for a variant written as a string.
struct Variant<'a, 'de>(Option<Tracked<'a, 'de>>);

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.0 {
            Some(content) => de::Deserialize::deserialize(content),
            None => Ok(()),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        match self.0 {
            Some(content) => content.tracked(seed.deserialize(content)),
            None => Err(unit_variant(&"newtype variant")),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Some(content) => content.deserialize_seq(visitor),
            None => Err(unit_variant(&"tuple variant")),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Some(content) => content.deserialize_map(visitor),
            None => Err(unit_variant(&"struct variant")),
        }
    }
}

fn unit_variant(expected: &dyn de::Expected) -> Error {
    de::Error::invalid_type(Unexpected::UnitVariant, expected)
}
