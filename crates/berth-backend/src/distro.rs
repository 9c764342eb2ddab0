//! Distros are root filesystem directories. `build_busybox` assembles one from the host's
//! statically linked busybox (Debian's busybox-static): enough for a shell, coreutils-like
//! applets, `id`, `ps`, `dd` — what the tests and a minimal customer login need.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{BackendError, IoContext, Result};

/// Where Debian's busybox-static puts the binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// What a container runs once its init is up (`ContainerSpec::command` when present).
pub const START_SCRIPT: &str = "etc/berth/start";

const START: &str = r#"#!/bin/sh
# Berth: run once the container's init is up. A customer's executable ~/start takes over.
echo "berth: $(hostname) up as uid $(id -u)"
if [ -x "$HOME/start" ]; then
    exec "$HOME/start"
fi
"#;

const DIRS: &[&str] = &[
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "etc/berth",
    "proc",
    "dev",
    "tmp",
    "run",
    "containers",
    "root",
    "var/log",
    "home",
];

/// Builds a busybox rootfs into `into`, which must be absent or an empty directory.
pub fn build_busybox(busybox: &Path, into: &Path) -> Result<()> {
    ensure_static(busybox)?;
    if into.exists() && fs::read_dir(into).ctx(|| format!("reading {}", into.display()))?.next().is_some() {
        return Err(BackendError::invalid("target", format!("{} is not empty", into.display())));
    }
    for dir in DIRS {
        fs::create_dir_all(into.join(dir)).ctx(|| format!("creating {}", into.join(dir).display()))?;
    }
    fs::set_permissions(into.join("tmp"), fs::Permissions::from_mode(0o1777)).ctx(|| "chmod tmp")?;
    fs::set_permissions(into.join("root"), fs::Permissions::from_mode(0o700)).ctx(|| "chmod root")?;
    let target = into.join("bin/busybox");
    fs::copy(busybox, &target).ctx(|| format!("copying {}", busybox.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).ctx(|| "chmod busybox")?;
    for applet in applets(busybox)? {
        let link = into.join(&applet);
        if applet == Path::new("bin/busybox") || link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
        }
        symlink("/bin/busybox", &link).ctx(|| format!("linking {}", link.display()))?;
    }
    let files: &[(&str, &str, u32)] = &[
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n", 0o644),
        ("etc/os-release", "NAME=\"Berth busybox\"\nID=berth-busybox\n", 0o644),
        ("etc/profile", "export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n", 0o644),
        (START_SCRIPT, START, 0o755),
    ];
    for (path, content, mode) in files {
        let file = into.join(path);
        fs::write(&file, content).ctx(|| format!("writing {}", file.display()))?;
        fs::set_permissions(&file, fs::Permissions::from_mode(*mode)).ctx(|| format!("chmod {}", file.display()))?;
    }
    Ok(())
}

/// The applet paths busybox knows (`bin/ls`, `usr/bin/wc`, …), relative to a root.
fn applets(busybox: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new(busybox).arg("--list-full").output().ctx(|| format!("running {}", busybox.display()))?;
    if !out.status.success() {
        return Err(BackendError::Failed(format!("{} --list-full failed", busybox.display())));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('/') && !l.contains(".."))
        .map(PathBuf::from)
        .collect())
}

/// A dynamically linked busybox would not run in a rootfs without its libraries.
fn ensure_static(binary: &Path) -> Result<()> {
    let mut head = Vec::new();
    fs::File::open(binary)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .ctx(|| format!("reading {} (is busybox-static installed?)", binary.display()))?;
    match elf_has_interpreter(&head) {
        Some(false) => Ok(()),
        Some(true) => Err(BackendError::invalid(
            "busybox",
            format!("{} is dynamically linked; install busybox-static", binary.display()),
        )),
        None => Err(BackendError::invalid("busybox", format!("{} is not a 64-bit ELF executable", binary.display()))),
    }
}

/// Whether a 64-bit little-endian ELF image has a PT_INTERP program header (`None`: not one).
fn elf_has_interpreter(image: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if image.len() < 64 || &image[..4] != b"\x7fELF" || image[4] != 2 || image[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| image.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let phoff = image.get(32..40).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)?;
    let (phentsize, phnum) = (u16_at(54)?, u16_at(56)?);
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = image.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()))?;
        if p_type == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic_binaries() {
        let sh = fs::read("/bin/sh").unwrap();
        assert_eq!(elf_has_interpreter(&sh), Some(true), "/bin/sh is dynamically linked on Debian");
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\necho hi\n"), None);
        assert_eq!(elf_has_interpreter(&[]), None);
    }

    #[test]
    fn refuses_a_non_empty_target_and_a_dynamic_busybox() {
        let dir = tempfile_dir();
        fs::write(dir.join("x"), "x").unwrap();
        if Path::new(HOST_BUSYBOX).exists() {
            assert!(matches!(build_busybox(Path::new(HOST_BUSYBOX), &dir), Err(BackendError::Invalid { .. })));
        }
        let err = build_busybox(Path::new("/bin/sh"), &dir.join("new")).unwrap_err();
        assert!(err.to_string().contains("dynamically linked"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-distro-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
