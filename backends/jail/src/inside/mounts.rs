//! The jail's root as data: [`root_plan`] turns a config into a list of [`Step`]s (unit
//! tests read it without root), [`apply`] runs them through [`Syscalls`].

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::syscall::Syscalls;
use super::Result;
use crate::protocol::{CgroupMount, JailConfig, Layout};

/// Where a step acts: a host path (only `/`, for the propagation change) or a path below
/// the new root (relative, no leading `/`; "" is the root itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Host(PathBuf),
    Root(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Mount { source: Option<String>, target: Target, fstype: Option<String>, flags: MsFlags, data: Option<String> },
    Mkdir { rel: String, mode: u32 },
    Touch { rel: String },
    Symlink { target: String, rel: String },
}

/// Host device nodes bind-mounted into the jail's `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

fn mount(source: &str, rel: &str, fstype: &str, flags: MsFlags, data: &str) -> Step {
    Step::Mount {
        source: Some(source.into()),
        target: Target::Root(rel.into()),
        fstype: Some(fstype.into()),
        flags,
        data: (!data.is_empty()).then(|| data.into()),
    }
}

fn mkdir(rel: &str, mode: u32) -> Step {
    Step::Mkdir { rel: rel.into(), mode }
}

/// Everything `init` mounts before the home: propagation first, then the overlay root,
/// `/dev`, `/tmp`, `/run` and the cgroup view.
pub fn root_plan(config: &JailConfig, layout: &Layout) -> Vec<Step> {
    let uid = config.spec.uid;
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut plan = vec![
        // Must come before any other mount: nothing below may propagate to the host.
        Step::Mount {
            source: None,
            target: Target::Host("/".into()),
            fstype: None,
            flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            data: None,
        },
        mount(
            "overlay",
            "",
            "overlay",
            MsFlags::empty(),
            &format!(
                "lowerdir={},upperdir={},workdir={}",
                config.spec.distro.path.display(),
                layout.upper().display(),
                layout.work().display()
            ),
        ),
    ];
    for dir in ["proc", "dev", "tmp", "run", "etc", "containers"] {
        plan.push(mkdir(dir, 0o755));
    }
    plan.push(mkdir(&format!("containers/{uid}"), 0o755));

    plan.push(mount("tmpfs", "dev", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, "mode=755,size=1024k"));
    for dev in DEVICES {
        let rel = format!("dev/{dev}");
        plan.push(Step::Touch { rel: rel.clone() });
        plan.push(Step::Mount {
            source: Some(format!("/dev/{dev}")),
            target: Target::Root(rel),
            fstype: None,
            flags: MsFlags::MS_BIND,
            data: None,
        });
    }
    for (target, rel) in [
        ("/proc/self/fd", "dev/fd"),
        ("/proc/self/fd/0", "dev/stdin"),
        ("/proc/self/fd/1", "dev/stdout"),
        ("/proc/self/fd/2", "dev/stderr"),
        ("pts/ptmx", "dev/ptmx"),
    ] {
        plan.push(Step::Symlink { target: target.into(), rel: rel.into() });
    }
    plan.push(mkdir("dev/pts", 0o755));
    plan.push(mount(
        "devpts",
        "dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    ));
    plan.push(mkdir("dev/shm", 0o1777));
    plan.push(mount("shm", "dev/shm", "tmpfs", nosuid_nodev, "mode=1777,size=65536k"));
    plan.push(mount("tmpfs", "tmp", "tmpfs", nosuid_nodev, "mode=1777"));
    plan.push(mount("tmpfs", "run", "tmpfs", nosuid_nodev, "mode=755,size=16384k"));
    plan.push(mkdir("run/cgroup", 0o755));
    let ro = MsFlags::MS_RDONLY | nosuid_nodev | MsFlags::MS_NOEXEC;
    plan.push(match config.cgroup_mount {
        CgroupMount::V1Memory => mount("cgroup", "run/cgroup", "cgroup", ro, "memory"),
        CgroupMount::V2 => mount("cgroup2", "run/cgroup", "cgroup2", ro, ""),
    });
    plan
}

/// Runs a plan against the new root `root`.
pub fn apply(sys: &dyn Syscalls, root: &Path, plan: &[Step]) -> Result<()> {
    for step in plan {
        match step {
            Step::Mount { source, target, fstype, flags, data } => {
                let path = match target {
                    Target::Host(path) => path.clone(),
                    Target::Root(rel) => {
                        sys.check_beneath(root, rel)?;
                        root.join(rel)
                    }
                };
                sys.mount(source.as_deref(), &path, fstype.as_deref(), *flags, data.as_deref())?;
            }
            Step::Mkdir { rel, mode } => sys.mkdir(root, rel, *mode)?,
            Step::Touch { rel } => sys.touch(root, rel)?,
            Step::Symlink { target, rel } => sys.symlink(target, root, rel)?,
        }
    }
    Ok(())
}

/// Mounts proc; run by pid 1 of the new pid namespace, after pivot_root.
pub fn mount_proc(sys: &dyn Syscalls) -> Result<()> {
    sys.mount(
        Some("proc"),
        Path::new("/proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::super::syscall::{Call, Recorder};
    use super::*;

    fn layout() -> Layout {
        Layout::new(Path::new("/var/lib/berth/jails"), 30123)
    }

    #[test]
    fn propagation_is_private_before_any_other_mount() {
        let plan = root_plan(&super::super::tests::config(), &layout());
        let first_mount = plan.iter().find(|s| matches!(s, Step::Mount { .. })).unwrap();
        assert_eq!(
            first_mount,
            &Step::Mount {
                source: None,
                target: Target::Host("/".into()),
                fstype: None,
                flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                data: None,
            }
        );
        // Every other mount lands below the new root.
        for step in &plan[1..] {
            if let Step::Mount { target, .. } = step {
                assert!(matches!(target, Target::Root(_)), "{step:?}");
            }
        }
    }

    #[test]
    fn overlay_uses_distro_upper_and_work() {
        let plan = root_plan(&super::super::tests::config(), &layout());
        assert_eq!(
            plan[1],
            mount(
                "overlay",
                "",
                "overlay",
                MsFlags::empty(),
                "lowerdir=/var/lib/berth/distros/busybox,upperdir=/var/lib/berth/jails/30123/upper,\
                 workdir=/var/lib/berth/jails/30123/work"
            )
        );
        assert!(plan.contains(&mkdir("containers/30123", 0o755)));
    }

    #[test]
    fn cgroup_view_follows_config() {
        let mut config = super::super::tests::config();
        let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let plan = root_plan(&config, &layout());
        assert!(plan.contains(&mount("cgroup", "run/cgroup", "cgroup", ro, "memory")));
        config.cgroup_mount = CgroupMount::V2;
        let plan = root_plan(&config, &layout());
        assert!(plan.contains(&mount("cgroup2", "run/cgroup", "cgroup2", ro, "")));
    }

    #[test]
    fn apply_checks_targets_and_stops_at_the_first_failure() {
        let plan = root_plan(&super::super::tests::config(), &layout());
        let sys = Recorder::default();
        apply(&sys, Path::new("/r"), &plan).unwrap();
        let calls = sys.calls.borrow();
        let bind =
            calls.iter().position(|c| matches!(c, Call::Mount { source: Some(s), .. } if s == "/dev/null")).unwrap();
        assert_eq!(calls[bind - 1], Call::Check("/r/dev/null".into()));
        assert_eq!(calls[bind - 2], Call::Touch("/r/dev/null".into()));

        let sys = Recorder { fail_at: Some(1), ..Default::default() };
        assert!(apply(&sys, Path::new("/r"), &plan).is_err());
        assert_eq!(sys.calls.borrow().len(), 2);
    }
}
