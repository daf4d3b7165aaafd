#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    dbwarden::cli::main()
}
