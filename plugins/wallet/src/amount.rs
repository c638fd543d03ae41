//! [`Amount`]: a whole number of the chain's smallest unit (wei, satoshi)
//! in operation inputs, as a JSON number or a decimal string — wei
//! amounts overflow what JSON numbers carry exactly.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Amount(pub u128);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::policy::amount(d).map(Amount)
    }
}

/// Out as a decimal string, exact whatever the size.
impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl JsonSchema for Amount {
    fn schema_name() -> Cow<'static, str> {
        "Amount".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A whole amount in the chain's smallest unit (wei, satoshi): a decimal string, or a number",
            "anyOf": [
                { "type": "string", "pattern": "^[0-9]{1,39}$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}
