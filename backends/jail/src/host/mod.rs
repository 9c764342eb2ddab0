//! Host-side building blocks of [`crate::JailBackend`]: everything the agent's process does
//! itself (files, cgroups, images, /proc) and the spawning of the in-jail helper. Nothing
//! here unshares, forks or mounts: that is the helper's job (`inside`).

pub(crate) mod cgroup;
pub(crate) mod distro;
pub(crate) mod files;
pub(crate) mod helper;
pub(crate) mod image;
pub(crate) mod logs;
pub(crate) mod loopdev;
pub(crate) mod paths;
pub(crate) mod process;
pub(crate) mod stats;
pub(crate) mod watch;
