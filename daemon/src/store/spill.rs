//! The daemon's own spill directory: a directory it creates inside the one it is given
//! (`--spill-dir`, else the system's temporary directory), writes its spill files into, and
//! removes, with everything in it, when it stops. Nothing else in the given directory is
//! touched: it may be the user's.
//!
//! The directory is made with `mkdir` (mode 0700), never reused: an entry of that name that
//! is already there, whatever it is (a symbolic link planted by someone else included), makes
//! the daemon try another name. A given directory the daemon cannot own a subdirectory of
//! safely is refused at start: not a directory, not writable, or writable by every user
//! without the sticky bit (another user could then move the daemon's directory away and put
//! a link in its place).

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Names tried before giving up (each attempt takes a fresh number).
const ATTEMPTS: u32 = 64;

/// Sets apart the spill directories of daemons within one process.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Why the daemon's spill directory could not be made. Each error says which directory,
/// what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpillDirError {
    /// The given directory is missing and could not be created.
    #[error("spill directory {} cannot be created: {cause}; {FIX}", dir.display())]
    Create {
        /// The directory given.
        dir: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The given directory cannot be looked at.
    #[error("spill directory {}: {cause}; {FIX}", dir.display())]
    Inspect {
        /// The directory given.
        dir: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The given path is not a directory.
    #[error("spill directory {} is not a directory; {FIX}", dir.display())]
    NotADirectory {
        /// The path given.
        dir: PathBuf,
    },
    /// The given directory is writable by every user and not sticky.
    #[error(
        "spill directory {} is writable by every user and not sticky, so another user could replace the daemon's files \
         in it; {FIX}, or make it sticky (chmod +t)",
        dir.display()
    )]
    Unsafe {
        /// The directory given.
        dir: PathBuf,
    },
    /// The daemon's own directory could not be made in it.
    #[error("cannot create the daemon's own directory in the spill directory {}: {cause}; {FIX}", dir.display())]
    Own {
        /// The directory given.
        dir: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// Every name tried was taken.
    #[error(
        "cannot create the daemon's own directory in the spill directory {}: {ATTEMPTS} names were taken (the last \
         {}); remove what earlier runs left there, or {FIX}",
        dir.display(),
        last.display()
    )]
    Taken {
        /// The directory given.
        dir: PathBuf,
        /// The last name tried.
        last: PathBuf,
    },
}

/// What to do about a spill directory the daemon cannot use.
const FIX: &str = "pass a directory of your own with --spill-dir";

/// A spill directory the daemon created and owns.
#[derive(Debug)]
pub struct SpillDir {
    path: PathBuf,
}

impl SpillDir {
    /// Creates the daemon `name`'s own directory in `parent` (created first, mode 0700, when
    /// it does not exist). The error says which directory, what is wrong and what to do.
    pub fn create(parent: &Path, name: &str) -> Result<SpillDir, SpillDirError> {
        let dir = parent.to_owned();
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|cause| SpillDirError::Create {
                    dir: dir.clone(),
                    cause,
                })?;
        }
        let meta = std::fs::metadata(parent).map_err(|cause| SpillDirError::Inspect {
            dir: dir.clone(),
            cause,
        })?;
        if !meta.is_dir() {
            return Err(SpillDirError::NotADirectory { dir });
        }
        // Sticky (like /tmp): only an entry's owner may rename or remove it.
        if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
            return Err(SpillDirError::Unsafe { dir });
        }
        let safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .take(64)
            .collect();
        let pid = std::process::id();
        let mut last = PathBuf::new();
        for _ in 0..ATTEMPTS {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("faasflow-spill-{safe}-{pid}-{n}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(SpillDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = path,
                Err(cause) => return Err(SpillDirError::Own { dir, cause }),
            }
        }
        Err(SpillDirError::Taken { dir, last })
    }

    /// The directory spill files go into.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and everything in it (the daemon's files alone). A symbolic
    /// link put in its place is removed, never followed.
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&self.path),
            Ok(_) => std::fs::remove_file(&self.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn scratch(what: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "faasflow-spill-test-{}-{what}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_directory_of_its_own_is_made_and_removed_leaving_the_rest() {
        let parent = scratch("own");
        std::fs::write(parent.join("notes.txt"), "mine").unwrap();
        let spill = SpillDir::create(&parent, "worker-0").unwrap();
        assert_eq!(spill.path().parent(), Some(parent.as_path()));
        let meta = std::fs::symlink_metadata(spill.path()).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o777, 0o700);
        std::fs::write(spill.path().join("object-1"), "x").unwrap();
        spill.remove().unwrap();
        assert!(!spill.path().exists());
        assert_eq!(std::fs::read_to_string(parent.join("notes.txt")).unwrap(), "mine");
        std::fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn a_missing_directory_is_created_and_two_daemons_get_two() {
        let parent = scratch("missing").join("a/b");
        let one = SpillDir::create(&parent, "local").unwrap();
        let two = SpillDir::create(&parent, "local").unwrap();
        assert_ne!(one.path(), two.path());
        std::fs::remove_dir_all(parent.parent().unwrap().parent().unwrap()).unwrap();
    }

    #[test]
    fn a_name_already_taken_is_never_reused_even_as_a_link() {
        let parent = scratch("taken");
        let elsewhere = scratch("elsewhere");
        // Plant links on the next names: the daemon must go around them.
        let pid = std::process::id();
        let next = NEXT.load(Ordering::Relaxed);
        for n in next..next + 4 {
            std::os::unix::fs::symlink(&elsewhere, parent.join(format!("faasflow-spill-local-{pid}-{n}"))).unwrap();
        }
        let spill = SpillDir::create(&parent, "local").unwrap();
        assert!(std::fs::symlink_metadata(spill.path()).unwrap().is_dir());
        spill.remove().unwrap();
        assert!(elsewhere.exists());
        std::fs::remove_dir_all(&parent).unwrap();
        std::fs::remove_dir_all(&elsewhere).unwrap();
    }

    #[test]
    fn a_link_put_in_its_place_is_removed_not_followed() {
        let parent = scratch("swapped");
        let victim = scratch("victim");
        std::fs::write(victim.join("keep"), "x").unwrap();
        let spill = SpillDir::create(&parent, "local").unwrap();
        std::fs::remove_dir(spill.path()).unwrap();
        std::os::unix::fs::symlink(&victim, spill.path()).unwrap();
        spill.remove().unwrap();
        assert!(victim.join("keep").exists());
        std::fs::remove_dir_all(&parent).unwrap();
        std::fs::remove_dir_all(&victim).unwrap();
    }

    #[test]
    fn a_file_or_a_world_writable_directory_is_refused() {
        let parent = scratch("refused");
        let file = parent.join("file");
        std::fs::write(&file, "").unwrap();
        let e = SpillDir::create(&file, "local").unwrap_err().to_string();
        assert!(e.contains("is not a directory") && e.contains("--spill-dir"), "{e}");
        let open = parent.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = SpillDir::create(&open, "local").unwrap_err().to_string();
        assert!(e.contains("writable by every user and not sticky"), "{e}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        SpillDir::create(&open, "local").unwrap().remove().unwrap();
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
