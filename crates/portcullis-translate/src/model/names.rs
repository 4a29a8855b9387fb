//! The API spelling of a generated enum's value (`"URLRewrite"`, `"CORS"`,
//! `"PathPrefix"`), read from its `Serialize` impl without building any
//! document: the generated types carry the spelling only in their serde
//! attributes.

use serde::Serialize;
use serde::ser::{self, Impossible};

/// The name a unit variant serialises to. Every generated enum of the
/// Gateway API types is a plain string enum, so this never fails for them;
/// anything else yields `""`.
pub(crate) fn variant<E: Serialize>(e: &E) -> &'static str {
    e.serialize(VariantName).unwrap_or("")
}

struct VariantName;

#[derive(Debug)]
struct NotUnitVariant;

impl std::fmt::Display for NotUnitVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a unit variant")
    }
}

impl std::error::Error for NotUnitVariant {}

impl ser::Error for NotUnitVariant {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NotUnitVariant
    }
}

type Out = Result<&'static str, NotUnitVariant>;
type No = Impossible<&'static str, NotUnitVariant>;

macro_rules! refuse {
    ($($name:ident($($t:ty),*);)*) => {
        $(fn $name(self, $(_: $t),*) -> Out { Err(NotUnitVariant) })*
    };
}

impl ser::Serializer for VariantName {
    type Ok = &'static str;
    type Error = NotUnitVariant;
    type SerializeSeq = No;
    type SerializeTuple = No;
    type SerializeTupleStruct = No;
    type SerializeTupleVariant = No;
    type SerializeMap = No;
    type SerializeStruct = No;
    type SerializeStructVariant = No;

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Out {
        Ok(variant)
    }

    refuse! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Out {
        Err(NotUnitVariant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, _: &T) -> Out {
        Err(NotUnitVariant)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Out {
        Err(NotUnitVariant)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<No, NotUnitVariant> {
        Err(NotUnitVariant)
    }
    fn serialize_tuple(self, _: usize) -> Result<No, NotUnitVariant> {
        Err(NotUnitVariant)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<No, NotUnitVariant> {
        Err(NotUnitVariant)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<No, NotUnitVariant> {
        Err(NotUnitVariant)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<No, NotUnitVariant> {
        Err(NotUnitVariant)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<No, NotUnitVariant> {
        Err(NotUnitVariant)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<No, NotUnitVariant> {
        Err(NotUnitVariant)
    }
}

#[cfg(test)]
mod tests {
    use super::variant;
    use portcullis_store::types::{
        HttpRouteRulesFiltersType, HttpRouteRulesMatchesMethod, HttpRouteRulesMatchesPathType,
    };

    #[test]
    fn api_spellings() {
        assert_eq!(
            variant(&HttpRouteRulesFiltersType::UrlRewrite),
            "URLRewrite"
        );
        assert_eq!(variant(&HttpRouteRulesFiltersType::Cors), "CORS");
        assert_eq!(
            variant(&HttpRouteRulesMatchesPathType::PathPrefix),
            "PathPrefix"
        );
        assert_eq!(variant(&HttpRouteRulesMatchesMethod::Get), "GET");
        assert_eq!(variant(&"not an enum"), "");
    }
}
