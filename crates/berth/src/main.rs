//! `berth`: the gateway (`serve`), the schema printer, migrations and operator commands.
//! Thin by design: parse the command line, build the parts, run.

mod admin;
mod alarm_delivery;
mod cli;
mod http_server;
mod serve;
mod telemetry;

use clap::Parser;

/// glibc's malloc showed as a quarter of a loaded gateway's profile (arena locks,
/// `malloc_consolidate`); mimalloc's per-thread heaps fit many short-lived allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hidden subcommand: the jail backend's helper, which must run before any thread exists
/// (unshare, setns), so it is dispatched before clap and the async runtime.
pub(crate) const JAIL_HELPER: &str = "jail-helper";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(JAIL_HELPER) {
        let code = berth_jail::inside::main(&args[2..]);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
