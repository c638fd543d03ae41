//! A plugin's `plugin.toml` text.
#![no_main]

use hearth_registry::PluginManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(manifest) = PluginManifest::parse(text) {
        let _ = manifest.namespace();
        let _ = manifest.check_exports(manifest.operations.iter().map(String::as_str));
    }
});
