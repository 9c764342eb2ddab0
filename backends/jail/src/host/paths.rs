//! Validation of container-relative paths (loopbox files and mountpoints).

use std::path::{Component, Path};

use berth_backend::BackendError;

/// A path relative to the home: non-empty, no leading `/`, no `.` or `..` component, no NUL.
pub fn validate_relative(what: &'static str, path: &str) -> Result<(), BackendError> {
    let bad = |reason: &str| Err(BackendError::invalid(what, format!("{path:?} {reason}")));
    if path.is_empty() {
        return Err(BackendError::invalid(what, "path is empty"));
    }
    if path.starts_with('/') {
        return bad("must be relative to the home");
    }
    if path.contains('\0') {
        return bad("contains a NUL byte");
    }
    if path.len() > 1024 {
        return bad("is too long");
    }
    // `Path::components` drops interior `.` components: check the raw segments too.
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return bad("must not contain . or .. components");
    }
    for c in Path::new(path).components() {
        if !matches!(c, Component::Normal(_)) {
            return bad("must stay inside the home");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_relative_paths() {
        for p in ["box.img", "boxes/a.img", "a/b/c", "dir/", "a//b"] {
            assert!(validate_relative("loopbox filename", p).is_ok(), "{p}");
        }
    }

    #[test]
    fn rejects_escapes_and_oddities() {
        for p in ["", "/etc/passwd", "../x", "a/../../x", "./a", "a/./b", "a/..", ".", "..", "a\0b"] {
            assert!(validate_relative("loopbox filename", p).is_err(), "{p:?}");
        }
    }
}
