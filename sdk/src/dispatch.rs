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

    /// For a plugin whose `plugin.toml` says `dynamic = true`: the
    /// operations found from its configuration (and granted HTTP), beside
    /// those [`Plugin::operations`] registers. The host asks at load and
    /// after [`discovery::operations_changed`](crate::discovery::operations_changed);
    /// an error refuses the load with its message.
    fn discover() -> Result<Vec<DynamicOp>, CallError> {
        Ok(Vec::new())
    }

    /// Runs operation `op`, one [`Plugin::discover`] listed, with its input.
    fn call_dynamic(
        cx: &Context,
        op: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        let _ = (cx, input);
        Err(CallError::not_found(format!(
            "this plugin has no operation `{op}`"
        )))
    }
}

/// An operation known only at run time, with its schemas as JSON values.
#[derive(Debug, Clone)]
pub struct DynamicOp {
    /// Last path segment: lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// Query, mutation or subscription.
    pub kind: OpKind,
    /// One or two sentences.
    pub description: String,
    /// JSON Schema of the input; its root is an object.
    pub input_schema: serde_json::Value,
    /// JSON Schema of the output.
    pub output_schema: serde_json::Value,
    /// Scopes an outside caller must hold.
    pub scopes: Vec<String>,
    /// For a subscription: JSON Schema of its events.
    pub event_schema: Option<serde_json::Value>,
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
    event_schema: Option<SchemaFn>,
    handler: Handler,
}

impl Operation {
    /// Scopes an outside caller must hold to call this operation.
    pub fn scopes(&mut self, scopes: &[&str]) -> &mut Self {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Declares the events a subscription emits (through
    /// [`events::emit`](crate::events::emit)): their schema goes into the
    /// spec.
    pub fn emits<E: JsonSchema>(&mut self) -> &mut Self {
        self.event_schema = Some(|| schemars::schema_for!(E));
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

    /// Registers a subscription: it streams events to the caller with
    /// [`events::emit`](crate::events::emit) while
    /// [`events::subscribed`](crate::events::subscribed), then returns.
    /// Chain [`Operation::emits`] to declare the events' type.
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
            event_schema: None,
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
                event_schema: op.event_schema.map(|f| f().as_value().to_string()),
            })
            .collect()
    }

    /// True when an operation of that name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.ops.iter().any(|op| op.name == name)
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
    fn specs() -> Result<Vec<OpSpec>, CallError> {
        let mut specs = Self::operations().specs();
        for op in P::discover()? {
            specs.push(OpSpec {
                name: op.name,
                kind: op.kind,
                description: op.description,
                input_schema: op.input_schema.to_string(),
                output_schema: op.output_schema.to_string(),
                scopes: op.scopes,
                event_schema: op.event_schema.map(|e| e.to_string()),
            });
        }
        Ok(specs)
    }

    fn handle(op: String, input: String, context: CallContext) -> Result<String, CallError> {
        let ops = Self::operations();
        let cx = Context::new(context);
        if ops.contains(&op) {
            return ops.dispatch(&op, &input, &cx);
        }
        let input: serde_json::Value = serde_json::from_str(&input)
            .map_err(|e| CallError::invalid_input(format!("input is not JSON: {e}")))?;
        let output = P::call_dynamic(&cx, &op, input)?;
        Ok(output.to_string())
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
