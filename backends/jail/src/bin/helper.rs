//! `berth-jail-helper <verb> …`: the in-jail helper as a standalone program (tests and
//! benchmarks); `berth jail-helper <verb> …` runs the same code.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(berth_jail::inside::main(&args));
}
