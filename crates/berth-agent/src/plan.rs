//! The decision, as pure functions: desired state + observation → what to do. No I/O here,
//! so every case is a unit test.

use std::path::PathBuf;
use std::time::Duration;

use berth_backend::{ContainerSpec, DistroSpec, LoopboxSpec, Observed, RunState};
use berth_model::{container_ip, uid_of};
use berth_service::runtime::DesiredContainer;

/// What stops a desired container from running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    /// Seed: "a container is not started until you assign it an ssh key and a distro".
    NoDistro,
    NoSshKey,
    /// A custom distro without a platform distro: this backend cannot run it yet.
    CustomDistro,
}

impl Blocker {
    /// Shown as the container's `lastError` (only for what the customer must know is broken;
    /// a container simply not configured yet is `STOPPED` without an error).
    pub fn error(self) -> Option<&'static str> {
        match self {
            Blocker::CustomDistro => Some("custom distros are not supported by this backend yet"),
            Blocker::NoDistro | Blocker::NoSshKey => None,
        }
    }
}

/// Why `d` must not run, if it must not.
pub fn blocker(d: &DesiredContainer) -> Option<Blocker> {
    if d.distro.is_none() {
        return Some(if d.container.custom_distro_id.is_some() { Blocker::CustomDistro } else { Blocker::NoDistro });
    }
    if !d.ssh_keys.iter().any(|k| !k.trim().is_empty()) {
        return Some(Blocker::NoSshKey);
    }
    None
}

/// One step of reconciliation for one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Desired and observed agree (a healthy adopted container keeps its pid).
    Nothing,
    /// Create (or update, while stopped) and start.
    Start,
    /// Running an older generation: stop, create with the new spec, start.
    Restart,
    /// Running but must not.
    Stop,
    /// On this host but no longer desired here: remove everything it had.
    Remove,
}

/// The one rule of the agent.
pub fn decide(desired: Option<&DesiredContainer>, observed: Option<&Observed>) -> Action {
    let running = observed.is_some_and(|o| o.state == RunState::Running);
    match desired {
        None if observed.is_some() => Action::Remove,
        None => Action::Nothing,
        Some(d) if blocker(d).is_some() => {
            if running {
                Action::Stop
            } else {
                Action::Nothing
            }
        }
        Some(d) => match observed {
            Some(o) if running && o.generation < d.container.generation => Action::Restart,
            Some(_) if running => Action::Nothing,
            _ => Action::Start,
        },
    }
}

/// The spec of a container that may run (`blocker(d)` is `None`). `has_start_script`: the
/// distro holds `etc/berth/start`, which then runs once the container's init is up.
pub fn spec(d: &DesiredContainer, has_start_script: bool) -> Option<ContainerSpec> {
    let (name, path) = d.distro.clone()?;
    let c = &d.container;
    Some(ContainerSpec {
        uid: u32::try_from(uid_of(c.id)).ok()?,
        generation: c.generation,
        hostname: c.hostname(),
        memory_mb: u64::try_from(c.memory).ok()?,
        storage_mb: u64::try_from(c.storage).ok()?,
        distro: DistroSpec { name, path: PathBuf::from(path) },
        ssh_keys: d.ssh_keys.iter().filter(|k| !k.trim().is_empty()).cloned().collect(),
        loopboxes: d
            .loopboxes
            .iter()
            .map(|b| LoopboxSpec { filename: b.filename.clone(), mountpoint: b.mountpoint.clone(), ro: b.ro })
            .collect(),
        ip: container_ip(c.id),
        command: has_start_script
            .then(|| vec!["/bin/sh".to_owned(), format!("/{}", berth_backend::distro::START_SCRIPT)]),
    })
}

/// What changes a running container without a restart: loopboxes to unmount (by
/// mountpoint) and to mount, from what was applied to what is desired. A loopbox whose
/// file or flags changed at the same mountpoint is unmounted, then mounted again.
pub fn loopbox_changes(applied: &[LoopboxSpec], desired: &[LoopboxSpec]) -> (Vec<String>, Vec<LoopboxSpec>) {
    let unmount = applied.iter().filter(|a| !desired.contains(a)).map(|a| a.mountpoint.clone()).collect();
    let mount = desired.iter().filter(|d| !applied.contains(d)).cloned().collect();
    (unmount, mount)
}

/// The delay before retry number `n` (1-based): `min · 2^(n-1)`, at most `max`.
pub fn backoff(min: Duration, max: Duration, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
    min.checked_mul(factor).unwrap_or(max).min(max)
}

/// The container id a backend uid names, if it can name one.
pub fn container_id_of(uid: u32) -> Option<i64> {
    berth_model::id_of_uid(i64::from(uid))
}

/// Disk use in percent of the container's storage, when it reaches `threshold`.
pub fn quota_over(disk_used: u64, storage_mb: i64, threshold: i64) -> Option<u64> {
    let total = u64::try_from(storage_mb).ok()?.checked_mul(1024 * 1024)?;
    let threshold = u64::try_from(threshold).ok()?;
    if total == 0 || u128::from(disk_used) * 100 < u128::from(threshold) * u128::from(total) {
        return None;
    }
    Some((u128::from(disk_used) * 100 / u128::from(total)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopbox_changes_unmount_what_went_and_mount_what_came() {
        let lb = |f: &str, m: &str, ro| LoopboxSpec { filename: f.into(), mountpoint: m.into(), ro };
        let applied = [lb("a.img", "a", false), lb("b.img", "b", false)];
        let desired = [lb("a.img", "a", false), lb("b.img", "b", true), lb("c.img", "c", false)];
        let (unmount, mount) = loopbox_changes(&applied, &desired);
        assert_eq!(unmount, ["b"]);
        assert_eq!(mount, [lb("b.img", "b", true), lb("c.img", "c", false)]);
        assert_eq!(loopbox_changes(&desired, &desired), (vec![], vec![]));
    }
    use berth_model::{Container, Loopbox};

    pub(crate) fn container(id: i64, generation: i64) -> Container {
        Container {
            id,
            customer_id: 1,
            server_id: 1,
            name: "my app".into(),
            memory: 64,
            storage: 100,
            uuid: String::new(),
            distro_id: Some(1),
            custom_distro_id: None,
            ssh_keys_raw: None,
            jid: None,
            jid_secret: None,
            jid_destinations: None,
            pushover_user: None,
            pushover_token: None,
            pushover_sound: None,
            pushbullet_token: None,
            slack_webhook: None,
            webhook_url: None,
            quota_threshold: 90,
            alarm_freq: 60,
            nofollow: false,
            note: None,
            custom_distros_storage: false,
            secret_uuid: None,
            alarm_key: None,
            max_alarms: 100,
            generation,
            last_reboot: 0,
            ssh_keys_mtime: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn desired(generation: i64) -> DesiredContainer {
        DesiredContainer {
            container: container(9, generation),
            distro: Some(("busybox".into(), "/srv/d/busybox".into())),
            loopboxes: vec![Loopbox {
                id: 1,
                container_id: 9,
                filename: "a.img".into(),
                mountpoint: "a".into(),
                ro: true,
            }],
            ssh_keys: vec!["ssh-ed25519 AAAA k".into(), "".into()],
        }
    }

    fn observed(state: RunState, generation: i64) -> Observed {
        Observed { uid: 30009, state, pid: Some(5), started_at: Some(1), generation }
    }

    #[test]
    fn decisions() {
        use Action::*;
        use RunState::*;
        let d = desired(3);
        assert_eq!(decide(Some(&d), None), Start);
        assert_eq!(decide(Some(&d), Some(&observed(Stopped, 3))), Start);
        assert_eq!(decide(Some(&d), Some(&observed(Stopped, 1))), Start);
        assert_eq!(decide(Some(&d), Some(&observed(Running, 3))), Nothing, "adoption keeps it");
        assert_eq!(decide(Some(&d), Some(&observed(Running, 4))), Nothing);
        assert_eq!(decide(Some(&d), Some(&observed(Running, 2))), Restart);
        assert_eq!(decide(None, Some(&observed(Running, 2))), Remove);
        assert_eq!(decide(None, Some(&observed(Stopped, 2))), Remove);
        assert_eq!(decide(None, None), Nothing);

        let mut keyless = desired(3);
        keyless.ssh_keys = vec!["".into(), "  ".into()];
        assert_eq!(blocker(&keyless), Some(Blocker::NoSshKey));
        assert_eq!(decide(Some(&keyless), Some(&observed(Running, 3))), Stop);
        assert_eq!(decide(Some(&keyless), Some(&observed(Stopped, 3))), Nothing);
        assert_eq!(decide(Some(&keyless), None), Nothing);

        let mut bare = desired(3);
        bare.distro = None;
        assert_eq!(blocker(&bare), Some(Blocker::NoDistro));
        assert_eq!(Blocker::NoDistro.error(), None);
        bare.container.custom_distro_id = Some(4);
        assert_eq!(blocker(&bare), Some(Blocker::CustomDistro));
        assert!(Blocker::CustomDistro.error().is_some());
        assert_eq!(decide(Some(&bare), Some(&observed(Running, 3))), Stop);
    }

    #[test]
    fn specs() {
        let d = desired(3);
        let s = spec(&d, true).unwrap();
        assert_eq!((s.uid, s.generation, s.hostname.as_str()), (30009, 3, "my-app"));
        assert_eq!((s.memory_mb, s.storage_mb), (64, 100));
        assert_eq!(s.distro, DistroSpec { name: "busybox".into(), path: "/srv/d/busybox".into() });
        assert_eq!(s.ssh_keys, ["ssh-ed25519 AAAA k"], "empty keys are dropped");
        assert_eq!(s.loopboxes, [LoopboxSpec { filename: "a.img".into(), mountpoint: "a".into(), ro: true }]);
        assert_eq!(s.ip.to_string(), "10.0.0.11");
        assert_eq!(s.command, Some(vec!["/bin/sh".to_owned(), "/etc/berth/start".to_owned()]));
        assert_eq!(spec(&d, false).unwrap().command, None);
        let mut bare = d.clone();
        bare.distro = None;
        assert_eq!(spec(&bare, false), None);
    }

    #[test]
    fn backoffs() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let got: Vec<u64> = (1..=8).map(|n| backoff(min, max, n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(min, max, 0), min);
        assert_eq!(backoff(min, max, 500), max);
    }

    #[test]
    fn quota() {
        let mib = 1024 * 1024;
        assert_eq!(quota_over(89 * mib, 100, 90), None);
        assert_eq!(quota_over(90 * mib, 100, 90), Some(90));
        assert_eq!(quota_over(93 * mib + 5, 100, 90), Some(93));
        assert_eq!(quota_over(1, 0, 90), None);
        assert_eq!(container_id_of(30009), Some(9));
        assert_eq!(container_id_of(30000), None);
    }
}
