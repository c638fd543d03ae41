//! Operation registration and dispatch: turns typed functions into the
//! `handler` interface the host calls.

use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::exports::hearth::node::handler::Guest;
use crate::bindings::hearth::node::types::{CallContext, OpKind, OpSpec};
use crate::{CallError, Context};

/// A plugin: lists its operations once; the SDK does the rest.
pub trait Plugin: 'static {
    /// Registers every operation, one line each.
    fn operations(ops: &mut Operations);
}

type Handler = Box<dyn Fn(&Context, &str) -> Result<String, CallError>>;
type SchemaFn = fn() -> schemars::Schema;

/// One registered operation; chain [`Operation::scopes`] to require scopes.
pub struct Operation {
    name: &'static str,
    kind: OpKind,
    description: &'static str,
    input_schema: SchemaFn,
    output_schema: SchemaFn,
    scopes: Vec<String>,
    handler: Handler,
}

impl Operation {
    /// Scopes an outside caller must hold to call this operation.
    pub fn scopes(&mut self, scopes: &[&str]) -> &mut Self {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }
}

/// The operations of a plugin, filled in by [`Plugin::operations`].
#[derive(Default)]
pub struct Operations {
    ops: Vec<Operation>,
}

impl Operations {
    /// Registers a query: reads state, changes nothing.
    pub fn query<I, O, F>(
        &mut self,
        name: &'static str,
        description: &'static str,
        f: F,
    ) -> &mut Operation
    where
        I: DeserializeOwned + JsonSchema,
        O: Serialize + JsonSchema,
        F: Fn(&Context, I) -> Result<O, CallError> + 'static,
    {
        self.add(name, OpKind::Query, description, f)
    }

    /// Registers a mutation: changes state.
    pub fn mutation<I, O, F>(
        &mut self,
        name: &'static str,
        description: &'static str,
        f: F,
    ) -> &mut Operation
    where
        I: DeserializeOwned + JsonSchema,
        O: Serialize + JsonSchema,
        F: Fn(&Context, I) -> Result<O, CallError> + 'static,
    {
        self.add(name, OpKind::Mutation, description, f)
    }

    /// Registers a subscription: it streams events to the caller (through
    /// a host capability such as `docker::watch_events`) until the caller
    /// leaves, then returns.
    pub fn subscription<I, O, F>(
        &mut self,
        name: &'static str,
        description: &'static str,
        f: F,
    ) -> &mut Operation
    where
        I: DeserializeOwned + JsonSchema,
        O: Serialize + JsonSchema,
        F: Fn(&Context, I) -> Result<O, CallError> + 'static,
    {
        self.add(name, OpKind::Subscription, description, f)
    }

    fn add<I, O, F>(
        &mut self,
        name: &'static str,
        kind: OpKind,
        description: &'static str,
        f: F,
    ) -> &mut Operation
    where
        I: DeserializeOwned + JsonSchema,
        O: Serialize + JsonSchema,
        F: Fn(&Context, I) -> Result<O, CallError> + 'static,
    {
        let handler: Handler = Box::new(move |cx, input| {
            let input: I = decode(input)?;
            let output = f(cx, input)?;
            serde_json::to_string(&output)
                .map_err(|e| CallError::failed(format!("cannot encode output: {e}")))
        });
        self.ops.push(Operation {
            name,
            kind,
            description,
            input_schema: || schemars::schema_for!(I),
            output_schema: || schemars::schema_for!(O),
            scopes: Vec::new(),
            handler,
        });
        // Just pushed, so the vector is non-empty.
        let last = self.ops.len() - 1;
        &mut self.ops[last]
    }

    /// The specs the host reads from `handler.specs`.
    pub fn specs(&self) -> Vec<OpSpec> {
        self.ops
            .iter()
            .map(|op| OpSpec {
                name: op.name.to_owned(),
                kind: op.kind,
                description: op.description.to_owned(),
                input_schema: (op.input_schema)().as_value().to_string(),
                output_schema: (op.output_schema)().as_value().to_string(),
                scopes: op.scopes.clone(),
            })
            .collect()
    }

    /// Runs operation `name` with JSON `input`.
    pub fn dispatch(&self, name: &str, input: &str, cx: &Context) -> Result<String, CallError> {
        let op = self.ops.iter().find(|op| op.name == name).ok_or_else(|| {
            CallError::not_found(format!("this plugin has no operation `{name}`"))
        })?;
        (op.handler)(cx, input)
    }
}

/// Decodes input JSON, naming the field that failed.
fn decode<I: DeserializeOwned>(input: &str) -> Result<I, CallError> {
    let de = &mut serde_json::Deserializer::from_str(input);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        CallError::invalid_input(format!("input field `{field}`: {}", e.inner()))
    })
}

/// Bridges a [`Plugin`] to the generated `handler` interface.
pub struct Adapter<P>(PhantomData<P>);

impl<P: Plugin> Adapter<P> {
    fn operations() -> Operations {
        let mut ops = Operations::default();
        P::operations(&mut ops);
        ops
    }
}

impl<P: Plugin> Guest for Adapter<P> {
    fn specs() -> Vec<OpSpec> {
        Self::operations().specs()
    }

    fn handle(op: String, input: String, context: CallContext) -> Result<String, CallError> {
        Self::operations().dispatch(&op, &input, &Context::new(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::hearth::node::types::Identity;
    use serde::Deserialize;

    #[derive(Deserialize, JsonSchema)]
    struct In {
        msg: String,
        times: u8,
    }

    #[derive(Serialize, JsonSchema)]
    struct Out {
        msg: String,
    }

    fn ops() -> Operations {
        let mut ops = Operations::default();
        ops.query("repeat", "Repeat a message.", |_cx, input: In| {
            Ok(Out {
                msg: input.msg.repeat(input.times.into()),
            })
        })
        .scopes(&["echo:read"]);
        ops
    }

    fn cx() -> Context {
        Context::new(CallContext {
            request_id: "r1".into(),
            parent_request_id: None,
            identity: Identity {
                id: "test".into(),
                scopes: vec![],
            },
            metadata: vec![],
            deadline_ms: 1000,
            trusted: false,
            depth: 0,
        })
    }

    #[test]
    fn specs_carry_derived_schemas() {
        let specs = ops().specs();
        assert_eq!(specs[0].name, "repeat");
        assert_eq!(specs[0].scopes, ["echo:read"]);
        let schema: serde_json::Value = serde_json::from_str(&specs[0].input_schema).unwrap();
        assert_eq!(schema["properties"]["msg"]["type"], "string");
        assert!(schema["required"].as_array().unwrap().len() == 2);
    }

    #[test]
    fn dispatch_decodes_runs_and_encodes() {
        let out = ops()
            .dispatch("repeat", r#"{"msg":"ab","times":2}"#, &cx())
            .unwrap();
        assert_eq!(out, r#"{"msg":"abab"}"#);
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = ops()
            .dispatch("repeat", r#"{"msg":"ab","times":"x"}"#, &cx())
            .unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::InvalidInput);
        assert!(err.message.contains("times"), "{}", err.message);
        let err = ops().dispatch("nope", "{}", &cx()).unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::NotFound);
    }
}
