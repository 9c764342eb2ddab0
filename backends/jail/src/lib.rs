//! The native jail backend: each container is a tree of processes in new mount, uts, ipc,
//! pid, net and cgroup namespaces, rooted in an overlay of its distro, with an ext4 home
//! image of `storage` MB, a cgroup memory limit, running as its own uid without
//! capabilities.
//!
//! Two halves share [`protocol`]: the host side ([`JailBackend`], inside the agent's
//! multi-threaded process) prepares files and cgroups and spawns the helper; the in-jail
//! side ([`inside`], a fresh single-threaded process) does what only such a process may
//! do: unshare, setns, pivot_root, fork into the new pid namespace.

pub mod inside;
pub mod protocol;

mod backend;
mod host;
pub use backend::{HelperCommand, JailBackend, JailOptions};
