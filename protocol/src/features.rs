//! Feature negotiation: what each side of a connection requires, can use
//! and supports, and what the two agree on.
//!
//! Features are stable strings, one per protocol-relevant capability, so
//! nodes of different versions can tell exactly what the other lacks
//! instead of comparing version numbers. A required feature the other side
//! does not support closes the connection with a reason both operators see.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Operations called over QUIC streams with the socket's frames.
pub const CALLS: &str = "calls";
/// Subscription events streamed back across nodes.
pub const EVENTS: &str = "events";
/// A call the caller abandons is cancelled on the peer.
pub const CANCEL: &str = "cancel";
/// The caller's remaining deadline travels with the call.
pub const DEADLINES: &str = "deadlines";
/// The node is a message broker; its dedupe window (seconds) is the
/// parameter [`BROKER_DEDUPE_WINDOW_S`]. Supported only by nodes with
/// `[broker] enabled = true`.
pub const BROKER: &str = "broker";
/// Parameter of [`BROKER`]: for how many seconds the broker remembers a
/// `(sender, client_message_id)` pair and answers a resend with the
/// message it stored.
pub const BROKER_DEDUPE_WINDOW_S: &str = "broker.dedupe_window_s";

/// Every feature this build implements, with what it means.
pub const KNOWN: &[(&str, &str)] = &[
    (CALLS, "operations called over QUIC streams"),
    (EVENTS, "subscription events streamed across nodes"),
    (CANCEL, "abandoned calls are cancelled on the peer"),
    (DEADLINES, "the caller's deadline travels with each call"),
    (
        BROKER,
        "a message broker that dedupes on (sender, client_message_id) within its window",
    ),
];

/// Features a node supports only when configured to (not by default).
const OPT_IN: &[&str] = &[BROKER];

/// One side's feature sets, as sent in its hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// The other side must support all of these.
    pub required: BTreeSet<String>,
    /// Used when the other side supports them.
    pub optional: BTreeSet<String>,
    /// Everything this side can do.
    pub supported: BTreeSet<String>,
    /// Values that go with supported features (`broker.dedupe_window_s`).
    pub parameters: BTreeMap<String, String>,
}

/// Why a configured feature set is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureConfigError {
    /// A name this build does not know.
    #[error("unknown feature `{0}` in [mesh]; known features: {known}", known = known_names())]
    Unknown(String),
    /// Requiring or using a feature this node has disabled.
    #[error("feature `{0}` is both disabled and required or optional in [mesh]; drop one")]
    Disabled(String),
}

fn known_names() -> String {
    KNOWN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The reason a connection cannot go on: what each side lacks of what the
/// other requires. Both sides compute the same value from the two hellos,
/// whichever way round, so both operators read the same reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .lacks.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Mismatch {
    /// One entry per side that lacks something, ordered by the lacking
    /// side's name.
    pub lacks: Vec<Lack>,
}

/// One side's missing features.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error("{lacking} lacks required feature(s) {} (required by {requiring})", list(.missing))]
pub struct Lack {
    /// The side that lacks them.
    pub lacking: String,
    /// The side that requires them.
    pub requiring: String,
    /// What is missing.
    pub missing: Vec<String>,
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Features {
    /// This node's sets from `[mesh]`: everything known minus `disable`.
    pub fn configured(
        required: &[String],
        optional: &[String],
        disable: &[String],
    ) -> Result<Features, FeatureConfigError> {
        let known: BTreeSet<String> = KNOWN.iter().map(|(n, _)| (*n).to_owned()).collect();
        for name in required.iter().chain(optional).chain(disable) {
            if !known.contains(name) {
                return Err(FeatureConfigError::Unknown(name.clone()));
            }
        }
        let disabled: BTreeSet<String> = disable.iter().cloned().collect();
        if let Some(both) = required
            .iter()
            .chain(optional)
            .find(|n| disabled.contains(*n))
        {
            return Err(FeatureConfigError::Disabled(both.clone()));
        }
        let required: BTreeSet<String> = required.iter().cloned().collect();
        let optional = optional
            .iter()
            .filter(|n| !required.contains(*n))
            .cloned()
            .collect();
        let supported = known
            .difference(&disabled)
            .filter(|name| !OPT_IN.contains(&name.as_str()))
            .cloned()
            .collect();
        Ok(Features {
            required,
            optional,
            supported,
            parameters: BTreeMap::new(),
        })
    }

    /// Adds [`BROKER`] with its dedupe window.
    pub fn with_broker(mut self, dedupe_window_s: u64) -> Features {
        self.supported.insert(BROKER.to_owned());
        self.parameters.insert(
            BROKER_DEDUPE_WINDOW_S.to_owned(),
            dedupe_window_s.to_string(),
        );
        self
    }

    /// The broker's dedupe window, when these features say the node is a
    /// broker and name a window that is a number.
    pub fn broker_window_s(&self) -> Option<u64> {
        if !self.supported.contains(BROKER) {
            return None;
        }
        self.parameters.get(BROKER_DEDUPE_WINDOW_S)?.parse().ok()
    }

    /// What `ours` (named `us`) and `theirs` (named `them`) agree on: the
    /// features both support that either side wants. Fails when either
    /// side lacks a feature the other requires; both sides compute the same
    /// answer from the same two hellos.
    pub fn negotiate(
        us: &str,
        ours: &Features,
        them: &str,
        theirs: &Features,
    ) -> Result<BTreeSet<String>, Mismatch> {
        let missing = |needs: &Features, has: &Features| -> Vec<String> {
            needs.required.difference(&has.supported).cloned().collect()
        };
        let mut lacks: Vec<Lack> = [
            (them, us, missing(ours, theirs)),
            (us, them, missing(theirs, ours)),
        ]
        .into_iter()
        .filter(|(_, _, missing)| !missing.is_empty())
        .map(|(lacking, requiring, missing)| Lack {
            lacking: lacking.to_owned(),
            requiring: requiring.to_owned(),
            missing,
        })
        .collect();
        if !lacks.is_empty() {
            // The same order on both sides, whichever is `us`.
            lacks.sort();
            return Err(Mismatch { lacks });
        }
        let wanted: BTreeSet<&String> = ours
            .required
            .iter()
            .chain(&ours.optional)
            .chain(&theirs.required)
            .chain(&theirs.optional)
            .collect();
        Ok(ours
            .supported
            .intersection(&theirs.supported)
            .filter(|f| wanted.contains(f))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn default_features() -> Features {
        Features::configured(
            &strings(&[CALLS]),
            &strings(&[EVENTS, CANCEL, DEADLINES]),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn two_defaults_agree_on_everything() {
        let a = default_features();
        let agreed = Features::negotiate("a", &a, "b", &a).unwrap();
        assert_eq!(agreed.len(), KNOWN.len() - OPT_IN.len());
    }

    #[test]
    fn a_missing_required_feature_names_who_lacks_what() {
        let head = Features::configured(&strings(&[CALLS, EVENTS]), &[], &[]).unwrap();
        let worker = Features::configured(&strings(&[CALLS]), &[], &strings(&[EVENTS])).unwrap();
        let from_head = Features::negotiate("head", &head, "worker-2", &worker).unwrap_err();
        let from_worker = Features::negotiate("worker-2", &worker, "head", &head).unwrap_err();
        assert_eq!(from_head, from_worker, "both sides see the same reason");
        assert_eq!(
            from_head.to_string(),
            "worker-2 lacks required feature(s) `events` (required by head)"
        );
    }

    #[test]
    fn when_both_sides_lack_something_both_name_both_lacks_alike() {
        // Found by the mesh_handshake fuzz target: each side used to report
        // only what the other lacked.
        let a = Features::configured(&strings(&[CALLS, EVENTS]), &[], &strings(&[CANCEL])).unwrap();
        let b = Features::configured(&strings(&[CALLS, CANCEL]), &[], &strings(&[EVENTS])).unwrap();
        let from_a = Features::negotiate("a", &a, "b", &b).unwrap_err();
        let from_b = Features::negotiate("b", &b, "a", &a).unwrap_err();
        assert_eq!(from_a, from_b);
        assert_eq!(
            from_a.to_string(),
            "a lacks required feature(s) `cancel` (required by b); b lacks required feature(s) `events` (required by a)"
        );
    }

    #[test]
    fn optional_features_are_used_only_when_both_support_them() {
        let a = default_features();
        let b = Features::configured(&strings(&[CALLS]), &[], &strings(&[CANCEL])).unwrap();
        let agreed = Features::negotiate("a", &a, "b", &b).unwrap();
        assert!(agreed.contains(EVENTS));
        assert!(!agreed.contains(CANCEL));
    }

    #[test]
    fn only_a_broker_supports_broker_and_names_its_window() {
        let plain = default_features();
        assert_eq!(plain.broker_window_s(), None);
        let broker = default_features().with_broker(86_400);
        assert_eq!(broker.broker_window_s(), Some(86_400));
        // A member asking for a broker is refused by a plain node.
        let member = Features::configured(&strings(&[CALLS, BROKER]), &[], &[]).unwrap();
        assert!(Features::negotiate("m", &member, "b", &broker).is_ok());
        assert!(Features::negotiate("m", &member, "p", &plain).is_err());
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert_eq!(
            Features::configured(&strings(&["teleport"]), &[], &[]).unwrap_err(),
            FeatureConfigError::Unknown("teleport".into())
        );
        assert!(matches!(
            Features::configured(&strings(&[EVENTS]), &[], &strings(&[EVENTS])),
            Err(FeatureConfigError::Disabled(_))
        ));
    }
}
