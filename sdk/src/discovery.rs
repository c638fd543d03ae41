//! For plugins whose operations are discovered at load (`dynamic = true`
//! in `plugin.toml`): [`Plugin::discover`](crate::Plugin::discover) lists
//! them, [`Plugin::call_dynamic`](crate::Plugin::call_dynamic) runs them,
//! and [`operations_changed`] tells the host to ask again.

use crate::bindings::hearth::node::discovery as wit_discovery;

/// Tells the host this plugin's operations changed: it asks
/// [`Plugin::discover`](crate::Plugin::discover) again (in another
/// instance, soon after), swaps its routes and announces the change.
pub fn operations_changed() {
    wit_discovery::operations_changed();
}
