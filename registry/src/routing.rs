//! The routing table: from an operation path to the spec and owner that
//! serve it, with input validated against the spec's schema before any
//! plugin code runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::call::{CallError, ErrorCode};
use crate::path::OperationPath;
use crate::spec::OperationSpec;

/// How many "did you mean" paths a `not-found` error names.
const MAX_SUGGESTIONS: usize = 3;

/// Who serves an operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The node itself: its native operation number `n` (an index into
    /// the node's table, so dispatch needs no lookup by path).
    Native(usize),
    /// A plugin, by its name in `stack.toml`.
    Plugin(String),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Native(_) => f.write_str("host"),
            Owner::Plugin(name) => f.write_str(name),
        }
    }
}

/// One routable operation.
pub struct Route {
    /// The operation's spec.
    pub spec: OperationSpec,
    /// Who serves it.
    pub owner: Owner,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("path", &self.spec.path)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Why the table could not route or accept something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// No operation at the path.
    #[error("no operation at `{path}`{}", suggest(.suggestions))]
    NotFound {
        /// The path asked for.
        path: String,
        /// The closest known paths, best first.
        suggestions: Vec<String>,
    },
    /// Two owners register the same path.
    #[error(
        "`{path}` is offered by both `{first}` and `{second}`; give one plugin another namespace"
    )]
    Duplicate {
        /// The contested path.
        path: String,
        /// The owner already registered.
        first: Owner,
        /// The owner that tried to register it again.
        second: Owner,
    },
}

fn suggest(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        "; `host ops` lists what this node offers".to_owned()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

/// Input that does not match an operation's input schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input to `{path}` is not valid at `{field}`: {message}")]
pub struct InputError {
    /// The operation.
    pub path: String,
    /// JSON pointer to the offending field (`/msg`), or `/` for the whole input.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl From<RoutingError> for CallError {
    fn from(err: RoutingError) -> Self {
        let code = match err {
            RoutingError::NotFound { .. } => ErrorCode::NotFound,
            RoutingError::Duplicate { .. } => ErrorCode::Conflict,
        };
        CallError::new(code, err.to_string())
    }
}

impl From<InputError> for CallError {
    fn from(err: InputError) -> Self {
        CallError::new(ErrorCode::InvalidInput, err.to_string())
    }
}

/// Every operation this node serves, by path.
#[derive(Debug, Default)]
pub struct RoutingTable {
    routes: BTreeMap<OperationPath, Arc<Route>>,
}

impl RoutingTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `spec`, served by `owner`. Fails when the path is taken.
    pub fn insert(&mut self, spec: OperationSpec, owner: Owner) -> Result<(), RoutingError> {
        if let Some(existing) = self.routes.get(&spec.path) {
            return Err(RoutingError::Duplicate {
                path: spec.path.to_string(),
                first: existing.owner.clone(),
                second: owner,
            });
        }
        // Specs are checked when built, so this only fails for a spec built
        // by hand; fall back to accepting anything rather than refusing.
        let validator = jsonschema::validator_for(&spec.input_schema)
            .or_else(|_| jsonschema::validator_for(&serde_json::Value::Bool(true)))
            .map_err(|_| RoutingError::NotFound {
                path: spec.path.to_string(),
                suggestions: Vec::new(),
            })?;
        self.routes.insert(
            spec.path.clone(),
            Arc::new(Route {
                spec,
                owner,
                validator,
            }),
        );
        Ok(())
    }

    /// The route for `path` (addressed through any node alias the caller
    /// has already resolved to local), or `not-found` with suggestions.
    pub fn lookup(&self, path: &OperationPath) -> Result<Arc<Route>, RoutingError> {
        let local = path.to_local();
        self.routes
            .get(&local)
            .cloned()
            .ok_or_else(|| self.not_found(&path.to_string()))
    }

    /// A `not-found` error for `asked`, which may not even parse as a path.
    pub fn not_found(&self, asked: &str) -> RoutingError {
        let mut scored: Vec<(f64, String)> = self
            .routes
            .keys()
            .map(|known| {
                let known = known.to_string();
                (strsim::jaro_winkler(asked, &known), known)
            })
            .filter(|(score, _)| *score >= 0.7)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        RoutingError::NotFound {
            path: asked.to_owned(),
            suggestions: scored
                .into_iter()
                .take(MAX_SUGGESTIONS)
                .map(|(_, p)| p)
                .collect(),
        }
    }

    /// All routes, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when no operation is registered.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl Route {
    /// Checks `input` against the input schema, naming the first bad field.
    pub fn validate_input(&self, input: &serde_json::Value) -> Result<(), InputError> {
        match self.validator.iter_errors(input).next() {
            None => Ok(()),
            Some(err) => {
                let pointer = err.instance_path().to_string();
                Err(InputError {
                    path: self.spec.path.to_string(),
                    field: if pointer.is_empty() {
                        "/".to_owned()
                    } else {
                        pointer
                    },
                    message: err.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::OpKind;

    fn table() -> RoutingTable {
        let mut table = RoutingTable::new();
        for name in ["ping", "put", "get"] {
            let spec = OperationSpec::from_parts(
                "echo",
                name,
                OpKind::Query,
                "",
                r#"{"type":"object","properties":{"msg":{"type":"string"}},"required":["msg"]}"#,
                "{}",
                vec![],
            )
            .unwrap();
            table.insert(spec, Owner::Plugin("echo".into())).unwrap();
        }
        table
    }

    #[test]
    fn unknown_paths_suggest_the_closest() {
        let table = table();
        let err = table
            .lookup(&"/node/echo/pong".parse().unwrap())
            .unwrap_err();
        let RoutingError::NotFound { suggestions, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(suggestions[0], "/node/echo/ping");
        assert!(err.to_string().contains("did you mean /node/echo/ping"));
    }

    #[test]
    fn duplicates_are_refused() {
        let mut table = table();
        let spec = table.routes.values().next().unwrap().spec.clone();
        assert!(matches!(
            table.insert(spec, Owner::Plugin("other".into())),
            Err(RoutingError::Duplicate { .. })
        ));
    }

    #[test]
    fn input_errors_name_the_field() {
        let table = table();
        let route = table.lookup(&"/node/echo/ping".parse().unwrap()).unwrap();
        route
            .validate_input(&serde_json::json!({"msg": "hi"}))
            .unwrap();
        let err = route
            .validate_input(&serde_json::json!({"msg": 7}))
            .unwrap_err();
        assert_eq!(err.field, "/msg");
        let err = route.validate_input(&serde_json::json!({})).unwrap_err();
        assert_eq!(err.field, "/");
        assert!(err.message.contains("msg"), "{}", err.message);
    }
}
