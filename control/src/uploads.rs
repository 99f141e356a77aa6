//! Uploaded files, the workflow inputs given as bytes rather than JSON (`PUT /v1/uploads`,
//! gRPC `Upload`, `faasflow invoke --input-file NAME=PATH`).
//!
//! An upload is streamed to `DIR/uploads/RANDOM.part` (the state directory's, else a
//! temporary one) and renamed to `DIR/uploads/ID` once whole, so a file under its id is
//! always complete; one that grows past the size limit is deleted at once and refused (HTTP
//! 413). Its id is its content's (the first 128 bits of its SHA-256, in hex): the same bytes
//! uploaded again get the same id, so a start retried with its idempotency key after
//! uploading its file again is the same request. A start names it by id for an input; when
//! the invocation runs, the planner streams it from disk to the entry worker (`PutInput`) or,
//! in MasterSP, to the remote tier. It is deleted once it has gone [`UploadConfig::keep_for`]
//! without being uploaded again or used; a planner started again deletes the `.part` files a
//! crash left.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use tokio::io::AsyncWriteExt as _;
use tonic::Status;

/// The largest upload taken, by default (4 GiB).
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 4 << 30;

/// How long an upload no execution used is kept, by default.
pub const DEFAULT_KEEP_UPLOADS_FOR: Duration = Duration::from_secs(3600);

/// Limits of uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadConfig {
    /// An upload larger than this is refused (413) and nothing of it kept.
    pub max_bytes: u64,
    /// An upload is deleted once it has gone this long without being uploaded again or used.
    pub keep_for: Duration,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            max_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            keep_for: DEFAULT_KEEP_UPLOADS_FOR,
        }
    }
}

/// Why an upload failed or cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    #[error(
        "the upload is larger than the {max} bytes this planner takes (its --max-upload-mib is {}); nothing of it was \
         kept",
        max >> 20
    )]
    TooLarge { max: u64 },
    #[error(
        "there is no upload `{id}`: upload the file first (`POST /v1/uploads`, or `--input-file`); an upload is \
         kept for {keep_s} s after it was last uploaded or used"
    )]
    Unknown { id: String, keep_s: u64 },
    #[error("the upload was cut short after {received} bytes ({cause}); nothing of it was kept")]
    Cut { received: u64, cause: String },
    #[error("cannot write the upload in {dir}: {cause}")]
    Io { dir: PathBuf, cause: std::io::Error },
}

impl From<UploadError> for Status {
    fn from(e: UploadError) -> Status {
        match e {
            UploadError::TooLarge { .. } => Status::out_of_range(e.to_string()),
            UploadError::Unknown { .. } => Status::not_found(e.to_string()),
            UploadError::Cut { .. } => Status::invalid_argument(e.to_string()),
            UploadError::Io { .. } => Status::internal(e.to_string()),
        }
    }
}

/// The directory for uploads cannot be made: uploads are refused.
#[derive(Debug, thiserror::Error)]
#[error("the planner cannot keep uploads: cannot make {}: {cause}", dir.display())]
pub(crate) struct NoUploads {
    dir: PathBuf,
    cause: std::io::Error,
}

/// The uploads of one planner.
#[derive(Debug)]
pub(crate) struct Uploads {
    dir: PathBuf,
    /// Made for this planner alone (no state directory): removed with it.
    temporary: bool,
    config: UploadConfig,
}

impl Uploads {
    /// The uploads in `state_dir/uploads` (made if missing; `.part` files a crash left are
    /// deleted), or, without a state directory, in a temporary directory of their own (made by
    /// the first upload).
    pub(crate) fn open(state_dir: Option<&Path>, config: UploadConfig) -> Result<Uploads, NoUploads> {
        let (dir, temporary) = match state_dir {
            Some(d) => (d.join("uploads"), false),
            None => {
                let n = random_hex(8).map_err(|cause| NoUploads {
                    dir: std::env::temp_dir(),
                    cause,
                })?;
                (std::env::temp_dir().join(format!("faasflow-uploads-{n}")), true)
            }
        };
        if temporary {
            // Made by the first upload: a planner that takes none leaves nothing behind.
            return Ok(Uploads { dir, temporary, config });
        }
        let entries = std::fs::create_dir_all(&dir).and_then(|()| std::fs::read_dir(&dir));
        let entries = entries.map_err(|cause| NoUploads {
            dir: dir.clone(),
            cause,
        })?;
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "part") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Uploads { dir, temporary, config })
    }

    /// Receives an upload from `body` (`declared`: the length the client announced, refused
    /// at once when over the limit): its id and size. Nothing is kept of one that fails.
    pub(crate) async fn receive<S, E>(&self, declared: Option<u64>, mut body: S) -> Result<(String, u64), UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let max = self.config.max_bytes;
        if declared.is_some_and(|n| n > max) {
            return Err(UploadError::TooLarge { max });
        }
        let io = |cause| UploadError::Io {
            dir: self.dir.clone(),
            cause,
        };
        if self.temporary {
            tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
        }
        let part = self.dir.join(format!("{}.part", random_hex(16).map_err(io)?));
        let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
        // Deletes the partial file unless the upload completes.
        let mut guard = RemoveOnDrop(Some(part.clone()));
        let mut received = 0u64;
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| UploadError::Cut {
                received,
                cause: e.to_string(),
            })?;
            received += piece.len() as u64;
            if received > max {
                return Err(UploadError::TooLarge { max });
            }
            digest.update(&piece);
            file.write_all(&piece).await.map_err(io)?;
        }
        if let Some(n) = declared.filter(|n| *n != received) {
            return Err(UploadError::Cut {
                received,
                cause: format!("{n} bytes were announced"),
            });
        }
        // On disk before it is named: a crash never leaves a short file under an id.
        file.sync_all().await.map_err(io)?;
        drop(file);
        let id: String = digest.finish().as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = self.dir.join(&id);
        let same = std::fs::metadata(&path).is_ok_and(|m| m.len() == received);
        if same && touch(&path) {
            // The same bytes are there already: kept longer, and this copy dropped.
            return Ok((id, received));
        }
        tokio::fs::rename(&part, &path).await.map_err(io)?;
        guard.0 = None;
        Ok((id, received))
    }

    /// The file of upload `id` and its size (it is kept [`UploadConfig::keep_for`] from now).
    pub(crate) fn find(&self, id: &str) -> Result<(PathBuf, u64), UploadError> {
        let unknown = || UploadError::Unknown {
            id: id.to_owned(),
            keep_s: self.config.keep_for.as_secs(),
        };
        // Ids are hex: nothing else names a file here.
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        let path = self.dir.join(id);
        let meta = std::fs::metadata(&path).map_err(|_| unknown())?;
        touch(&path);
        Ok((path, meta.len()))
    }

    /// Deletes the uploads older than [`UploadConfig::keep_for`]; how many. (One being sent
    /// to a worker is read to its end: its open file outlives its name.)
    pub(crate) fn sweep(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".part") {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= self.config.keep_for);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The uploads kept (`.part` files of uploads under way too): how many, and their bytes.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, u64) {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten().fold((0, 0), |(n, b), e| {
                    (n + 1, b + e.metadata().map(|m| m.len()).unwrap_or(0))
                })
            })
            .unwrap_or((0, 0))
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Removes a file when dropped, unless taken.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Sets the file's modification time to now; whether it exists.
fn touch(path: &Path) -> bool {
    std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .is_ok()
}

/// `bytes` random bytes from the kernel, as hex.
fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(pieces: Vec<Result<&'static [u8], &'static str>>) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures_util::stream::iter(
            pieces
                .into_iter()
                .map(|p| p.map(Bytes::from_static).map_err(str::to_owned)),
        )
    }

    /// An empty directory of this test's own.
    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("faasflow-uploads-test-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn uploads(dir: &Path, max_bytes: u64) -> Uploads {
        let config = UploadConfig {
            max_bytes,
            keep_for: Duration::from_secs(3600),
        };
        Uploads::open(Some(dir), config).expect("open")
    }

    #[tokio::test]
    async fn an_upload_is_kept_whole_under_its_id() {
        let dir = scratch("kept");
        let u = uploads(dir.as_path(), 100);
        let (id, n) = u
            .receive(None, body(vec![Ok(b"hello "), Ok(b"world")]))
            .await
            .expect("upload");
        assert_eq!(n, 11);
        let (path, len) = u.find(&id).expect("found");
        assert_eq!(len, 11);
        assert_eq!(std::fs::read(path).expect("read"), b"hello world");
        assert_eq!(u.usage(), (1, 11));
        // Its id is its content's: the same bytes again are the same upload, kept once.
        let (again, _) = u.receive(None, body(vec![Ok(b"hello world")])).await.expect("again");
        assert_eq!(again, id);
        let (other, _) = u.receive(None, body(vec![Ok(b"hello world!")])).await.expect("other");
        assert_ne!(other, id);
        assert_eq!(u.usage(), (2, 23));
        // A file under its id whose length is wrong (a disk that lost its end) is replaced.
        std::fs::write(u.find(&id).expect("found").0, b"hello").expect("damage");
        let (again, _) = u.receive(None, body(vec![Ok(b"hello world")])).await.expect("again");
        assert_eq!(
            std::fs::read(u.find(&again).expect("found").0).expect("read"),
            b"hello world"
        );
    }

    #[tokio::test]
    async fn without_a_state_directory_uploads_go_to_a_temporary_one_made_when_needed() {
        let u = Uploads::open(None, UploadConfig::default()).expect("open");
        assert!(!u.dir.exists(), "made before any upload");
        let (id, _) = u.receive(None, body(vec![Ok(b"x")])).await.expect("upload");
        assert!(u.find(&id).is_ok());
        let dir = u.dir.clone();
        drop(u);
        assert!(!dir.exists(), "left behind");
    }

    #[tokio::test]
    async fn too_large_or_cut_uploads_leave_nothing() {
        let dir = scratch("large");
        let u = uploads(dir.as_path(), 8);
        let e = u
            .receive(None, body(vec![Ok(b"12345"), Ok(b"6789")]))
            .await
            .unwrap_err();
        assert!(matches!(e, UploadError::TooLarge { max: 8 }), "{e}");
        let e = u.receive(Some(9), body(vec![])).await.unwrap_err();
        assert!(matches!(e, UploadError::TooLarge { .. }), "announced too large: {e}");
        let e = u.receive(None, body(vec![Ok(b"123"), Err("reset")])).await.unwrap_err();
        assert!(matches!(e, UploadError::Cut { received: 3, .. }), "{e}");
        assert!(e.to_string().contains("reset"), "{e}");
        let e = u.receive(Some(5), body(vec![Ok(b"123")])).await.unwrap_err();
        assert!(e.to_string().contains("after 3 bytes (5 bytes were announced)"), "{e}");
        assert_eq!(u.usage(), (0, 0), "nothing kept");
    }

    #[tokio::test]
    async fn ids_name_only_uploads() {
        let dir = scratch("ids");
        std::fs::write(dir.as_path().join("secret"), b"x").expect("write");
        let u = uploads(dir.as_path(), 8);
        for id in ["../secret", "", "uploads", "ab/../../secret"] {
            assert!(matches!(u.find(id), Err(UploadError::Unknown { .. })), "{id}");
        }
        let e = u.find("00112233445566778899aabbccddeeff").unwrap_err();
        assert!(e.to_string().contains("upload the file first"), "{e}");
    }

    #[tokio::test]
    async fn old_unused_uploads_are_swept_and_leftover_parts_removed() {
        let dir = scratch("swept");
        let config = UploadConfig {
            max_bytes: 100,
            keep_for: Duration::ZERO,
        };
        let u = Uploads::open(Some(dir.as_path()), config).expect("open");
        let (a, _) = u.receive(None, body(vec![Ok(b"a")])).await.expect("a");
        std::fs::write(dir.as_path().join("uploads").join("ff.part"), b"cut").expect("write");
        assert_eq!(u.sweep(), 1, "the old upload goes; a part file under way stays");
        assert!(u.find(&a).is_err());
        assert_eq!(u.usage(), (1, 3));
        drop(u);
        let config = UploadConfig {
            keep_for: Duration::from_secs(3600),
            ..config
        };
        let u = Uploads::open(Some(dir.as_path()), config).expect("open again");
        let (b, _) = u.receive(None, body(vec![Ok(b"b")])).await.expect("b");
        assert_eq!(u.sweep(), 0, "a new upload stays");
        assert!(u.find(&b).is_ok());
        assert_eq!(u.usage(), (1, 1), "the crash's part file is gone");
    }
}
