//! The `meshloop` binary: parse arguments, set up logging, run the command, map the result
//! to an exit code. Everything else is in the library.

use clap::Parser;

/// Reading YAML with positions allocates a small block per node, on several threads at once;
/// mimalloc serves those faster than the system allocator (README, dependency notes).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = meshloop::cli::Cli::parse();
    meshloop::telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    runtime.block_on(meshloop::cli::run(cli))
}
