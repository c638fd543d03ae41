//! Operation names from names found elsewhere (an OpenAPI `operationId`,
//! an MCP tool name), for plugins whose operations are discovered.
//!
//! The rule, documented for operators: camelCase is split (`findPets` →
//! `find-pets`), letters are lowercased, every run of other characters but
//! `_` becomes one `-`, the name starts with a letter (`op-` is put first
//! otherwise) and has at most 64 characters; a name already taken gets
//! `-2`, `-3`, … in the order the names were found.

use std::collections::BTreeSet;

/// Longest operation name the host takes.
pub const MAX_NAME: usize = 64;

/// An operation name from `text` (empty when `text` has no letter or digit).
pub fn operation_name(text: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            if !out.ends_with('-') {
                out.push('-');
            }
            prev_lower = false;
        }
    }
    let trimmed = out.trim_matches('-');
    let mut name = if trimmed.starts_with(|c: char| c.is_ascii_lowercase()) {
        trimmed.to_owned()
    } else if trimmed.is_empty() {
        String::new()
    } else {
        format!("op-{trimmed}")
    };
    name.truncate(MAX_NAME);
    name.trim_end_matches('-').to_owned()
}

/// Names not yet taken, handed out in order.
#[derive(Debug, Default)]
pub struct UniqueNames {
    taken: BTreeSet<String>,
}

impl UniqueNames {
    /// `base`, or `base-2`, `base-3`, … the first not taken yet; taken now.
    pub fn take(&mut self, base: &str) -> String {
        let mut name = base.to_owned();
        let mut n = 2;
        while self.taken.contains(&name) {
            let suffix = format!("-{n}");
            let keep = base.len().min(MAX_NAME - suffix.len());
            name = format!("{}{suffix}", base[..keep].trim_end_matches('-'));
            n += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        assert_eq!(operation_name("findPetsByStatus"), "find-pets-by-status");
        assert_eq!(operation_name("get /pet/{petId}"), "get-pet-pet-id");
        assert_eq!(operation_name("List_Users v2"), "list_users-v2");
        assert_eq!(operation_name("2fa.verify"), "op-2fa-verify");
        assert_eq!(operation_name("get-sum"), "get-sum");
        assert_eq!(operation_name(&"x".repeat(100)).len(), 64);
        assert_eq!(operation_name("..."), "");
        let mut names = UniqueNames::default();
        assert_eq!(names.take("a"), "a");
        assert_eq!(names.take("a"), "a-2");
        assert_eq!(names.take("a"), "a-3");
    }
}
