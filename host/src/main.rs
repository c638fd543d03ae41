//! The `host` binary: see [`hearth_host::cli`].

fn main() -> std::process::ExitCode {
    hearth_host::cli::main()
}
