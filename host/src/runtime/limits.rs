//! Per-instance resource limits, and a record of which one a failed call hit
//! so its error can name the limit and the setting that raises it.

use wasmtime::ResourceLimiter;

/// Core instances, tables and memories one component instance may create.
/// A Rust `wasm32-wasip2` component needs a handful of each.
const MAX_CORE_INSTANCES: usize = 32;
const MAX_TABLES: usize = 16;
const MAX_MEMORIES: usize = 4;

/// A limit a call ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitHit {
    /// Linear memory would have grown past the plugin's limit.
    Memory {
        /// The limit, in bytes.
        limit: usize,
        /// What the plugin asked for, in bytes.
        desired: usize,
    },
    /// A table would have grown past `limits.table_elements`.
    Table {
        /// The limit, in elements.
        limit: usize,
        /// What the plugin asked for.
        desired: usize,
    },
}

/// The error a limiter raises; the call fails right there (a trap) rather
/// than letting the allocator inside the plugin abort on its own.
#[derive(Debug)]
pub struct LimitExceeded(pub LimitHit);

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            LimitHit::Memory { limit, desired } => {
                write!(
                    f,
                    "linear memory limit of {limit} bytes exceeded (asked for {desired})"
                )
            }
            LimitHit::Table { limit, desired } => {
                write!(
                    f,
                    "table limit of {limit} elements exceeded (asked for {desired})"
                )
            }
        }
    }
}

impl std::error::Error for LimitExceeded {}

/// Enforces one instance's limits.
#[derive(Debug, Clone)]
pub struct CallLimiter {
    memory_bytes: usize,
    table_elements: usize,
    /// The limit the current call hit, if any.
    pub hit: Option<LimitHit>,
}

impl CallLimiter {
    /// Limits of `memory_bytes` per memory and `table_elements` per table.
    pub fn new(memory_bytes: usize, table_elements: usize) -> Self {
        CallLimiter {
            memory_bytes,
            table_elements,
            hit: None,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let hit = LimitHit::Memory {
                limit: self.memory_bytes,
                desired,
            };
            self.hit = Some(hit.clone());
            return Err(wasmtime::Error::new(LimitExceeded(hit)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let hit = LimitHit::Table {
                limit: self.table_elements,
                desired,
            };
            self.hit = Some(hit.clone());
            return Err(wasmtime::Error::new(LimitExceeded(hit)));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_is_an_error_and_recorded() {
        let mut limiter = CallLimiter::new(1 << 20, 100);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, (1 << 20) + 1, None).is_err());
        assert_eq!(
            limiter.hit,
            Some(LimitHit::Memory {
                limit: 1 << 20,
                desired: (1 << 20) + 1
            })
        );
        assert!(limiter.table_growing(0, 101, None).is_err());
        assert!(matches!(limiter.hit, Some(LimitHit::Table { .. })));
    }
}
