//! The console log: `console.log` in the container's log dir (reached through a dir fd
//! opened before pivot_root), one `<unix secs, 6 decimals> <text>` line per output line,
//! renamed to `console.log.1` before it would pass `LOG_ROTATE_BYTES`.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fstat, Mode};

use crate::protocol::LOG_ROTATE_BYTES;

/// Output lines are cut to this many bytes.
pub const MAX_LINE: usize = 4096;
const CURRENT: &str = "console.log";
const OLD: &str = "console.log.1";

/// Appends timestamped lines. Errors are swallowed: the log must never stop the init.
pub struct ConsoleLog {
    dir: OwnedFd,
    file: Option<(std::fs::File, u64)>,
    rotate_at: u64,
}

impl ConsoleLog {
    pub fn new(dir: OwnedFd) -> Self {
        ConsoleLog { dir, file: None, rotate_at: LOG_ROTATE_BYTES }
    }

    fn open(&self) -> Option<(std::fs::File, u64)> {
        let fd = openat(
            self.dir.as_fd(),
            CURRENT,
            OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o640),
        )
        .ok()?;
        let size = fstat(fd.as_fd()).map(|s| s.st_size as u64).unwrap_or(0);
        Some((std::fs::File::from(fd), size))
    }

    /// Writes one line (text without its newline), stamped with the current time.
    pub fn line(&mut self, text: &[u8]) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut record = format!("{}.{:06} ", now.as_secs(), now.subsec_micros()).into_bytes();
        record.extend_from_slice(&text[..text.len().min(MAX_LINE)]);
        record.push(b'\n');
        self.write_record(&record);
    }

    fn write_record(&mut self, record: &[u8]) {
        if self.file.is_none() {
            self.file = self.open();
        }
        let len = record.len() as u64;
        if matches!(&self.file, Some((_, size)) if *size > 0 && size + len > self.rotate_at) {
            self.file = None;
            let _ = renameat(self.dir.as_fd(), CURRENT, self.dir.as_fd(), OLD);
            self.file = self.open();
        }
        if let Some((file, size)) = &mut self.file {
            if file.write_all(record).is_ok() {
                *size += len;
            }
        }
    }
}

/// Splits a byte stream into lines; a line longer than [`MAX_LINE`] is cut there and the
/// rest of it dropped.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
    /// Dropping the rest of a cut line, up to its newline.
    skipping: bool,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit` for every complete line (without `\n` or a trailing `\r`).
    pub fn feed(&mut self, mut bytes: &[u8], emit: &mut dyn FnMut(&[u8])) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (chunk, rest, ended) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if !self.skipping {
                let room = MAX_LINE - self.pending.len();
                self.pending.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room || (self.pending.len() == MAX_LINE && !ended) {
                    self.flush(emit);
                    self.skipping = !ended;
                    continue;
                }
            }
            if ended {
                if self.skipping {
                    self.skipping = false;
                } else {
                    self.flush(emit);
                }
            }
        }
    }

    /// Emits a pending partial line (at EOF).
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if !self.pending.is_empty() {
            self.flush(emit);
        }
        self.skipping = false;
    }

    fn flush(&mut self, emit: &mut dyn FnMut(&[u8])) {
        let line = self.pending.strip_suffix(b"\r").unwrap_or(&self.pending);
        emit(line);
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.feed(c, &mut |l| out.push(l.to_vec()));
        }
        s.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn splits_lines_across_chunks() {
        assert_eq!(split(&[b"a\nb", b"c\r\n\nd"]), vec![b"a".to_vec(), b"bc".to_vec(), b"".to_vec(), b"d".to_vec()]);
    }

    #[test]
    fn cuts_long_lines() {
        let long = vec![b'x'; MAX_LINE + 10];
        let out = split(&[&long, b"yy\nz\n"]);
        assert_eq!(out, vec![vec![b'x'; MAX_LINE], b"z".to_vec()]);
        let exact = vec![b'x'; MAX_LINE];
        let out = split(&[&exact, b"\nz\n"]);
        assert_eq!(out, vec![vec![b'x'; MAX_LINE], b"z".to_vec()]);
    }

    #[test]
    fn writes_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let fd = nix::fcntl::open(dir.path(), OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let mut log = ConsoleLog::new(fd);
        log.rotate_at = 100;
        for i in 0..5 {
            log.line(format!("line {i} {}", "x".repeat(20)).as_bytes());
        }
        let current = std::fs::read_to_string(dir.path().join(CURRENT)).unwrap();
        let old = std::fs::read_to_string(dir.path().join(OLD)).unwrap();
        assert!(current.len() <= 100 && old.len() <= 100, "{current:?} {old:?}");
        assert!(current.ends_with(&format!("line 4 {}\n", "x".repeat(20))));
        let first = old.lines().next().unwrap();
        let (stamp, text) = first.split_once(' ').unwrap();
        assert!(text.starts_with("line "));
        let (secs, micros) = stamp.split_once('.').unwrap();
        assert!(secs.parse::<u64>().unwrap() > 1_600_000_000 && micros.len() == 6);
    }
}
