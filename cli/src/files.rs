//! Reading the user's files: every read is bounded, so that a device or a pipe that never ends
//! (`/dev/zero`, a FIFO fed forever) costs at most the limit, not all the memory there is.

use std::io::Read as _;
use std::path::Path;

/// Why a bounded read failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The file holds more than the limit (its size, when it is a regular file).
    TooLarge(Option<u64>),
}

/// The bytes of `path`, at most `limit` of them: reading stops one byte past the limit.
pub(crate) fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if meta.is_dir() {
        return Err(ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "it is a directory, not a file",
        )));
    }
    if meta.is_file() && meta.len() > limit as u64 {
        return Err(ReadError::TooLarge(Some(meta.len())));
    }
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() > limit {
        // (A regular file that grew while it was read: its size is not known.)
        return Err(ReadError::TooLarge(None));
    }
    Ok(bytes)
}

/// `32 MiB`, or bytes when not a whole number of MiB.
pub(crate) fn mib(bytes: usize) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// ` (it holds N bytes)` when the size is known.
pub(crate) fn holds(size: Option<u64>) -> String {
    size.map(|s| format!(" (it holds {s} bytes)")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_stops_one_byte_past_the_limit() {
        match read_bounded(Path::new("/dev/zero"), 1000) {
            Err(ReadError::TooLarge(None)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_within_the_limit_is_read_whole_and_a_larger_one_gives_its_size() {
        let path = std::env::temp_dir().join(format!("faasflow-bounded-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_bounded(&path, 10).unwrap(), b"0123456789");
        match read_bounded(&path, 9) {
            Err(ReadError::TooLarge(Some(10))) => {}
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(read_bounded(&path, 9), Err(ReadError::Io(_))));
    }
}
