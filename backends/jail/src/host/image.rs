//! The ext4 home image: created with Debian's mkfs.ext4, grown or shrunk with e2fsck +
//! resize2fs while the container is stopped. Berth never writes ext4 itself.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use thiserror::Error;

use berth_backend::BackendError;

use super::helper::{read_tail, tail_text, STDERR_TAIL};

const MIB: u64 = 1024 * 1024;
/// A filesystem tool that runs longer than this is stuck.
const TOOL_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("{action} home image: {source}")]
    Io { action: &'static str, source: io::Error },
    #[error("{tool} failed on the home image: {detail}")]
    Tool { tool: &'static str, detail: String },
    #[error("the home holds more data than {mb} MB: cannot shrink it ({detail})")]
    DoesNotFit { mb: u64, detail: String },
}

impl From<ImageError> for BackendError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Io { action, source } => BackendError::io(format!("{action} home image"), source),
            ImageError::DoesNotFit { .. } => BackendError::invalid("storage", e.to_string()),
            other => BackendError::Failed(other.to_string()),
        }
    }
}

/// What [`ensure`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum ImageChange {
    None,
    Created,
    Grown,
    Shrunk,
}

/// Makes `img` an ext4 image of `storage_mb` MiB whose root belongs to `uid:uid`. Resizes an
/// existing image only when `may_resize` (the container is stopped).
pub async fn ensure(img: &Path, uid: u32, storage_mb: u64, may_resize: bool) -> Result<ImageChange, ImageError> {
    let want = storage_mb
        .checked_mul(MIB)
        .ok_or_else(|| ImageError::Tool { tool: "sizing", detail: "storage too large".into() })?;
    let size = match fs::metadata(img) {
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(ImageError::Io { action: "inspecting", source }),
    };
    match size {
        None => {
            create(img, uid, want).await?;
            Ok(ImageChange::Created)
        }
        Some(size) if size == want || !may_resize => Ok(ImageChange::None),
        Some(size) if size < want => {
            fsck(img).await?;
            set_len(img, want)?;
            run("resize2fs", &[img.as_os_str().to_owned()])
                .await
                .map_err(|d| ImageError::Tool { tool: "resize2fs", detail: d })?;
            Ok(ImageChange::Grown)
        }
        Some(_) => {
            fsck(img).await?;
            let target = format!("{storage_mb}M");
            if let Err(detail) = run("resize2fs", &[img.as_os_str().to_owned(), target.into()]).await {
                // Shown to the customer: without the image's host path.
                let detail = detail.replace(&*img.to_string_lossy(), "home.img");
                return Err(ImageError::DoesNotFit { mb: storage_mb, detail });
            }
            set_len(img, want)?;
            Ok(ImageChange::Shrunk)
        }
    }
}

/// Sparse file + mkfs under a temporary name, renamed into place once complete, so a failed
/// mkfs never leaves an image that looks ready.
async fn create(img: &Path, uid: u32, bytes: u64) -> Result<(), ImageError> {
    let tmp: PathBuf = img.with_extension("img.new");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|source| ImageError::Io { action: "creating", source })?;
    file.set_len(bytes).map_err(|source| ImageError::Io { action: "sizing", source })?;
    drop(file);
    let owner = format!("root_owner={uid}:{uid}");
    let args = ["-q", "-F", "-m", "0", "-E", &owner]
        .iter()
        .map(Into::into)
        .chain([tmp.as_os_str().to_owned()])
        .collect::<Vec<_>>();
    if let Err(detail) = run("mkfs.ext4", &args).await {
        let _ = fs::remove_file(&tmp);
        return Err(ImageError::Tool { tool: "mkfs.ext4", detail });
    }
    fs::rename(&tmp, img).map_err(|source| ImageError::Io { action: "installing", source })
}

fn set_len(img: &Path, bytes: u64) -> Result<(), ImageError> {
    OpenOptions::new()
        .write(true)
        .open(img)
        .and_then(|f| f.set_len(bytes))
        .map_err(|source| ImageError::Io { action: "resizing", source })
}

/// `e2fsck -fy`: exit 0 (clean), 1 and 2 (errors corrected) are fine.
async fn fsck(img: &Path) -> Result<(), ImageError> {
    let args = ["-f".into(), "-y".into(), img.as_os_str().to_owned()];
    match run_status("e2fsck", &args).await {
        Ok((code, _)) if code <= 2 => Ok(()),
        Ok((code, tail)) => Err(ImageError::Tool { tool: "e2fsck", detail: format!("exit {code}: {tail}") }),
        Err(detail) => Err(ImageError::Tool { tool: "e2fsck", detail }),
    }
}

/// Runs a tool; `Err` with its exit status and output tail unless it exits 0.
async fn run(tool: &'static str, args: &[std::ffi::OsString]) -> Result<(), String> {
    match run_status(tool, args).await? {
        (0, _) => Ok(()),
        (code, tail) => Err(format!("exit {code}: {tail}")),
    }
}

/// The tool's exit code (-1 for a signal) and the tail of its stdout + stderr.
async fn run_status(tool: &'static str, args: &[std::ffi::OsString]) -> Result<(i32, String), String> {
    let mut child = tokio::process::Command::new(tool_path(tool))
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    let out = tokio::spawn(read_tail(child.stdout.take().expect("piped"), STDERR_TAIL));
    let err = tokio::spawn(read_tail(child.stderr.take().expect("piped"), STDERR_TAIL));
    let status = match tokio::time::timeout(TOOL_TIMEOUT, child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("waiting for {tool}: {e}")),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(format!("{tool} did not finish within {} s", TOOL_TIMEOUT.as_secs()));
        }
    };
    let mut text = out.await.unwrap_or_default();
    text.extend(err.await.unwrap_or_default());
    Ok((status.code().unwrap_or(-1), tail_text(&text)))
}

/// The Debian tools live in /usr/sbin or /sbin, which an agent's PATH may lack.
fn tool_path(tool: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(tool)
}
