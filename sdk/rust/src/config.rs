//! Read-only settings the operator granted this plugin
//! (`[plugin.NAME] config = {...}`, `secrets = {...}` in hookhost's config).

use crate::__bindings::hookhost::plugin::config as wit;

/// A configuration value, or `None` when the operator did not set it.
pub fn get(name: &str) -> Option<String> {
    wit::get(name)
}

/// A secret, or `None` when not granted. Never log it.
pub fn secret(name: &str) -> Option<String> {
    wit::secret(name)
}
