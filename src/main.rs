//! The `zoom` binary: parse arguments, run, print the error chain, set the exit code.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
