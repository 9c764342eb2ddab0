//! The in-jail helper (see `protocol` for its verbs). Runs in a fresh, single-threaded
//! process: never call it from a process that has started threads (tokio).

/// Runs one helper verb; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let _ = args;
    eprintln!("berth jail-helper: not built yet");
    1
}
