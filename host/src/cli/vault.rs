//! `host vault …` and `host id`.
//!
//! `init`, `backup` and `restore` work on the data directory directly (the
//! seed never crosses the socket); `unlock`, `lock` and `status` talk to the
//! running node.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;
use zeroize::Zeroizing;

use super::passphrase;
use crate::config::NodeConfig;
use crate::vault::{self, KdfParams, SealedRecord};

/// Kind of a backup record.
const BACKUP_KIND: &str = "backup";

/// `host vault` subcommands.
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Create the vault: a new BIP39 mnemonic (shown once) or an imported one.
    Init {
        /// Read an existing mnemonic from standard input instead.
        #[arg(long)]
        import: bool,
        /// Words in a new mnemonic: 12, 15, 18, 21 or 24.
        #[arg(long, default_value_t = 24)]
        words: usize,
        #[command(flatten)]
        common: Offline,
    },
    /// Unlock the running node's vault.
    Unlock {
        /// File holding the passphrase (else $HEARTH_PASSPHRASE, else a prompt).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Lock the running node's vault: wipe the seed from its memory.
    Lock,
    /// Whether the vault is absent, locked or unlocked.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an encrypted backup of the seed and the stack's grants.
    Backup {
        /// The backup file to create.
        file: PathBuf,
        #[command(flatten)]
        common: Offline,
    },
    /// Restore the vault from a backup (refuses to replace an existing vault).
    Restore {
        /// The backup file.
        file: PathBuf,
        #[command(flatten)]
        common: Offline,
    },
}

/// Options of the commands that work on the data directory.
#[derive(Debug, clap::Args)]
pub struct Offline {
    /// The stack file whose data directory holds the vault.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// File holding the passphrase (else $HEARTH_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn vault_file(config: Option<&Path>) -> Result<(PathBuf, NodeConfig), String> {
    let config = NodeConfig::load(config).map_err(|e| e.to_string())?;
    crate::config::create_private_dir(&config.data_dir)
        .map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
    Ok((config.vault_file(), config))
}

/// Runs the offline commands; the socket ones are in `cli::mod`.
pub fn run_offline(command: VaultCommand) -> ExitCode {
    match command {
        VaultCommand::Init {
            import,
            words,
            common,
        } => init(import, words, &common),
        VaultCommand::Backup { file, common } => backup(&file, &common),
        VaultCommand::Restore { file, common } => restore(&file, &common),
        _ => fail("not an offline command"),
    }
}

fn with_progress<T>(what: &str, f: impl FnOnce() -> T) -> T {
    eprint!("{what} (Argon2id, 64 MiB)… ");
    let started = Instant::now();
    let out = f();
    eprintln!("{} ms", started.elapsed().as_millis());
    out
}

fn init(import: bool, words: usize, common: &Offline) -> ExitCode {
    let (file, _) = match vault_file(common.config.as_deref()) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if file.exists() {
        return fail(format!(
            "a vault already exists at {}; back it up and move it away first",
            file.display()
        ));
    }
    let imported = if import {
        let mut text = Zeroizing::new(String::new());
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            return fail(format!("cannot read the mnemonic from stdin: {e}"));
        }
        Some(text)
    } else {
        None
    };
    let passphrase = match passphrase::require(
        common.passphrase_file.as_deref(),
        "new vault passphrase: ",
        true,
    ) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if passphrase.is_empty() {
        return fail("the passphrase must not be empty");
    }
    let created = with_progress("sealing the seed", || {
        vault::create(
            imported.as_deref().map(|s| s.as_str()),
            words,
            passphrase.as_bytes(),
            KdfParams::DEFAULT,
        )
    });
    let created = match created {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Err(e) = vault::store(&file, &created.record) {
        return fail(e);
    }
    if !import {
        println!("Your recovery phrase, shown this once. Write it down and keep it offline:\n");
        println!("    {}\n", created.mnemonic.as_str());
    }
    println!("vault created: {}", file.display());
    println!(
        "node identity: {} ({})",
        created.identity.public_key, created.identity.fingerprint
    );
    ExitCode::SUCCESS
}

fn backup(target: &Path, common: &Offline) -> ExitCode {
    let (file, config) = match vault_file(common.config.as_deref()) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if target.exists() {
        return fail(format!("{} exists; choose a new file", target.display()));
    }
    let record = match vault::read_record(&file) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let passphrase = match passphrase::require(
        common.passphrase_file.as_deref(),
        "vault passphrase: ",
        false,
    ) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let seed = match with_progress("opening the vault", || {
        record.open(vault::SEED_KIND, passphrase.as_bytes())
    }) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let grants: serde_json::Map<String, serde_json::Value> = config
        .plugins
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                serde_json::to_value(&p.grants).unwrap_or_default(),
            )
        })
        .collect();
    let mut plaintext = Zeroizing::new(seed.to_vec());
    plaintext.extend_from_slice(serde_json::Value::Object(grants).to_string().as_bytes());
    let sealed = with_progress("sealing the backup", || {
        SealedRecord::seal(
            BACKUP_KIND,
            &plaintext,
            passphrase.as_bytes(),
            KdfParams::DEFAULT,
            &record.public,
        )
    });
    let sealed = match sealed {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Err(e) = vault::store(target, &sealed) {
        return fail(e);
    }
    println!(
        "backup written: {} (identity {})",
        target.display(),
        record.public
    );
    ExitCode::SUCCESS
}

fn restore(source: &Path, common: &Offline) -> ExitCode {
    let (file, _) = match vault_file(common.config.as_deref()) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    // Everything is checked before anything is written: a wrong passphrase
    // or a damaged backup leaves the data directory as it was.
    if file.exists() {
        return fail(format!(
            "a vault already exists at {}; move it away before restoring",
            file.display()
        ));
    }
    let backup = match vault::read_record(source) {
        Ok(r) => r,
        Err(e) => return fail(format!("{}: {e}", source.display())),
    };
    let passphrase = match passphrase::require(
        common.passphrase_file.as_deref(),
        "backup passphrase: ",
        false,
    ) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let plaintext = match with_progress("opening the backup", || {
        backup.open(BACKUP_KIND, passphrase.as_bytes())
    }) {
        Ok(p) => p,
        Err(e) => return fail(format!("{}: {e}", source.display())),
    };
    if plaintext.len() < 64 {
        return fail(format!("{}: the backup holds no seed", source.display()));
    }
    let (seed, grants) = plaintext.split_at(64);
    let record = with_progress("sealing the restored seed", || {
        SealedRecord::seal(
            vault::SEED_KIND,
            seed,
            passphrase.as_bytes(),
            KdfParams::DEFAULT,
            &backup.public,
        )
    });
    let record = match record {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Err(e) = vault::store(&file, &record) {
        return fail(e);
    }
    println!(
        "vault restored: {} (identity {})",
        file.display(),
        backup.public
    );
    if let Ok(grants) = serde_json::from_slice::<serde_json::Value>(grants) {
        println!("grants recorded in the backup (compare with your stack.toml):");
        println!(
            "{}",
            serde_json::to_string_pretty(&grants).unwrap_or_default()
        );
    }
    ExitCode::SUCCESS
}
