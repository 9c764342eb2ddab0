//! Distro checks: a distro is a root filesystem directory with an executable `/bin/sh`.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DistroError {
    /// The operator's path stays in the agent's log; customers see the distro's name only.
    #[error("its root filesystem is missing or not a directory")]
    NotDirectory(String),
    #[error("{0}")]
    Shell(String),
}

/// Symlink hops allowed while resolving one path (as the kernel's limit).
const MAX_LINKS: usize = 40;

/// Checks that `root` is a directory holding an executable `bin/sh`, following symlinks as
/// the container would see them (absolute links resolve against `root`).
pub fn check_rootfs(root: &Path) -> Result<(), DistroError> {
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        _ => return Err(DistroError::NotDirectory(root.display().to_string())),
    }
    let sh = resolve_in_root(root, Path::new("bin/sh")).map_err(DistroError::Shell)?;
    let meta = fs::metadata(&sh).map_err(|e| DistroError::Shell(format!("/bin/sh: {e}")))?;
    if !meta.is_file() {
        return Err(DistroError::Shell("/bin/sh is not a regular file".into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(DistroError::Shell("/bin/sh is not executable".into()));
    }
    Ok(())
}

/// Resolves `rel` inside `root` like a chroot would: `..` stops at the root, absolute
/// symlink targets start again at the root. Returns the host path of the final file.
pub fn resolve_in_root(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    // Pending components, processed front to back; symlink targets are spliced in.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, rel);
    pending.reverse();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(resolved.iter());
        candidate.push(&name);
        let meta = match fs::symlink_metadata(&candidate) {
            Ok(m) => m,
            Err(e) => {
                let mut shown = PathBuf::from("/");
                shown.extend(resolved.iter());
                shown.push(&name);
                return Err(format!("{}: {e}", shown.display()));
            }
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(format!("/{}: too many symbolic links", rel.display()));
            }
            let target = fs::read_link(&candidate).map_err(|e| format!("/{}: {e}", rel.display()))?;
            if target.is_absolute() {
                resolved.clear();
            }
            let mut more = Vec::new();
            push_components(&mut more, &target);
            for c in more.into_iter().rev() {
                pending.push(c);
            }
        } else {
            resolved.push(name);
        }
    }
    let mut out = root.to_path_buf();
    out.extend(resolved.iter());
    Ok(out)
}

fn push_components(out: &mut Vec<OsString>, path: &Path) {
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => out.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn exe(path: &Path) {
        fs::write(path, b"#!/bin/true\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn follows_relative_and_absolute_links_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        exe(&root.join("usr/bin/busybox"));
        symlink("/usr/bin/busybox", root.join("bin/sh")).unwrap();
        check_rootfs(root).unwrap();
        fs::remove_file(root.join("bin/sh")).unwrap();
        symlink("../usr/bin/busybox", root.join("bin/sh")).unwrap();
        check_rootfs(root).unwrap();
        // usrmerge: /bin -> usr/bin
        fs::remove_file(root.join("bin/sh")).unwrap();
        fs::remove_dir(root.join("bin")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink("busybox", root.join("usr/bin/sh")).unwrap();
        check_rootfs(root).unwrap();
    }

    #[test]
    fn rejects_missing_escaping_looping_and_non_executable_shells() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        assert!(check_rootfs(&root.join("nope")).is_err());
        assert!(check_rootfs(root).is_err());
        fs::create_dir_all(root.join("bin")).unwrap();
        // An absolute link must not reach the host's /bin/sh.
        symlink("/../../../../bin/sh", root.join("bin/sh")).unwrap();
        assert!(check_rootfs(root).is_err());
        fs::remove_file(root.join("bin/sh")).unwrap();
        symlink("sh", root.join("bin/sh")).unwrap();
        assert!(check_rootfs(root).is_err());
        fs::remove_file(root.join("bin/sh")).unwrap();
        fs::write(root.join("bin/sh"), b"x").unwrap();
        fs::set_permissions(root.join("bin/sh"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_rootfs(root).is_err());
    }
}
