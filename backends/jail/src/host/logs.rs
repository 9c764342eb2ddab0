//! The console log written by the jail's init: `<unix seconds.micros> <text>` per line, in
//! `console.log.1` (older) and `console.log`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use berth_backend::LogLine;

/// Parses one log file's content, keeping lines within `[since, until]`.
pub fn parse(text: &str, since: Option<f64>, until: Option<f64>, out: &mut Vec<LogLine>) {
    for raw in text.lines() {
        let (stamp, line) = raw.split_once(' ').unwrap_or((raw, ""));
        let Ok(unix) = stamp.parse::<f64>() else { continue };
        if !unix.is_finite() {
            continue;
        }
        if since.is_some_and(|s| unix < s) || until.is_some_and(|u| unix > u) {
            continue;
        }
        out.push(LogLine { unix, line: line.to_string() });
    }
}

/// Reads the rotated then the current log, oldest first; missing files give nothing.
pub fn read(old: &Path, current: &Path, since: Option<f64>, until: Option<f64>) -> Vec<LogLine> {
    let mut out = Vec::new();
    for path in [old, current] {
        if let Some(bytes) = read_regular(path) {
            parse(&String::from_utf8_lossy(&bytes), since, until, &mut out);
        }
    }
    out
}

/// The content of `path` if it is a regular file. The log directory belongs to the
/// container's uid: a symlink (or fifo) there is never followed (or waited on).
fn read_regular(path: &Path) -> Option<Vec<u8>> {
    let mut file =
        fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters_and_orders() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("console.log.1");
        let cur = t.path().join("console.log");
        assert!(read(&old, &cur, None, None).is_empty());
        fs::write(&old, "100.000001 first\n101.500000 second line  with spaces\nnot a stamp\n").unwrap();
        fs::write(&cur, "102.000000 \n103.000000\n104.250000 last\n").unwrap();
        let all = read(&old, &cur, None, None);
        let lines: Vec<&str> = all.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["first", "second line  with spaces", "", "", "last"]);
        assert_eq!(all[0].unix, 100.000001);
        let some = read(&old, &cur, Some(101.5), Some(103.0));
        let stamps: Vec<f64> = some.iter().map(|l| l.unix).collect();
        assert_eq!(stamps, [101.5, 102.0, 103.0]);

        // A link placed in the log directory is not followed.
        let secret = t.path().join("secret");
        fs::write(&secret, "200.000000 host secret\n").unwrap();
        fs::remove_file(&old).unwrap();
        std::os::unix::fs::symlink(&secret, &old).unwrap();
        let lines: Vec<String> = read(&old, &cur, None, None).into_iter().map(|l| l.line).collect();
        assert_eq!(lines, ["", "", "last"]);
    }
}
