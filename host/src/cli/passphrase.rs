//! Where a passphrase comes from: `--passphrase-file`, then
//! `$HEARTH_PASSPHRASE`, then a prompt on the terminal. Never from an
//! argument, where other users could read it in the process list.

use std::io::IsTerminal;
use std::path::Path;

use zeroize::Zeroizing;

/// The environment variable holding a passphrase.
pub const ENV: &str = "HEARTH_PASSPHRASE";

/// Reads a passphrase; `Ok(None)` when none is available without a
/// terminal. `confirm` asks twice at a prompt.
pub fn read(
    file: Option<&Path>,
    prompt: &str,
    confirm: bool,
) -> Result<Option<Zeroizing<String>>, String> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let text = Zeroizing::new(text);
        return Ok(Some(Zeroizing::new(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        )));
    }
    if let Ok(value) = std::env::var(ENV) {
        return Ok(Some(Zeroizing::new(value)));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let first = Zeroizing::new(
        rpassword::prompt_password(prompt)
            .map_err(|e| format!("cannot read the passphrase: {e}"))?,
    );
    if confirm {
        let second =
            Zeroizing::new(rpassword::prompt_password("repeat it: ").map_err(|e| e.to_string())?);
        if first != second {
            return Err("the passphrases differ".to_owned());
        }
    }
    Ok(Some(first))
}

/// Like [`read`] but a passphrase is required.
pub fn require(
    file: Option<&Path>,
    prompt: &str,
    confirm: bool,
) -> Result<Zeroizing<String>, String> {
    read(file, prompt, confirm)?.ok_or_else(|| {
        format!("no passphrase: pass --passphrase-file FILE, set {ENV}, or run on a terminal to be prompted")
    })
}
