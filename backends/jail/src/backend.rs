//! Host side of the jail backend.

use std::path::PathBuf;

/// How to run the in-jail helper: a program and the arguments that precede the verb
/// (`berth` + `["jail-helper"]`, or `berth-jail-helper` + `[]`).
#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct JailOptions {
    /// One directory per container below it (`protocol::Layout`).
    pub root: PathBuf,
    /// Cgroup directory name under each controller's hierarchy root (`berth` by default);
    /// tests use their own so what they leave behind is easy to check.
    pub cgroup_parent: String,
    pub helper: HelperCommand,
}

/// The jail backend.
pub struct JailBackend {
    #[allow(dead_code)]
    options: JailOptions,
}

impl JailBackend {
    pub fn new(options: JailOptions) -> Self {
        JailBackend { options }
    }
}
