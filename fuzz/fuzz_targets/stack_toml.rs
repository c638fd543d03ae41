//! `stack.toml` text into the file model; errors must locate themselves.
#![no_main]

use std::path::Path;

use hearth_registry::StackFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = StackFile::parse(text, Path::new("stack.toml")) {
        assert!(err.to_string().starts_with("stack.toml:"));
    }
});
