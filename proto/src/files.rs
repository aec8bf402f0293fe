//! Writing files so that an interrupted write leaves the old file whole: write a temporary file in
//! the same directory with its final mode, sync it, rename it over the target, sync the directory.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}")]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A failed file operation's error: `action` says what was done to `path` ("create", "move").
pub fn file_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_owned();
    move |source| FileError {
        action,
        path,
        source,
    }
}

/// Replaces `path` with `contents` atomically, with permissions `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let directory = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    let temporary = directory.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(FileError {
            action: "write",
            path: temporary,
            source,
        });
    }
    std::fs::rename(&temporary, path).map_err(file_error("replace", path))?;
    std::fs::File::open(directory)
        .and_then(|directory_handle| directory_handle.sync_all())
        .map_err(file_error("sync", directory))
}

/// Reads a file to a string; the error names the file.
pub fn read_to_string(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(file_error("read", path))
}

/// Reads a small text file that a person named (a cluster file, a password file): it must be a
/// regular file (a FIFO, a device or a directory is refused at once, without blocking) of at most
/// `max` bytes. The error says which and never holds the file's contents.
pub fn read_regular(path: &Path, max: u64) -> Result<String, FileError> {
    use std::io::Read as _;
    let refused = |action: &'static str, message: String| FileError {
        action,
        path: path.to_owned(),
        source: std::io::Error::other(message),
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(file_error("open", path))?;
    let metadata = file.metadata().map_err(file_error("read", path))?;
    if !metadata.is_file() {
        return Err(refused(
            "read",
            "it is not a regular file (a FIFO, a device or a directory)".to_owned(),
        ));
    }
    if metadata.len() > max {
        return Err(refused(
            "read",
            format!(
                "it is {} bytes, more than the {max} allowed",
                metadata.len()
            ),
        ));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(file_error("read", path))?;
    if bytes.len() as u64 > max {
        return Err(refused(
            "read",
            format!("it grew past the {max} bytes allowed"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| refused("read", "it is not UTF-8 text".to_owned()))
}

/// Reads at most the last `max` bytes of a file (a log), as text; a line cut at the start is kept.
pub fn read_tail(path: &Path, max: u64) -> Result<String, FileError> {
    let length = std::fs::metadata(path)
        .map_err(file_error("read", path))?
        .len();
    let bytes = read_range(path, length.saturating_sub(max), max)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads at most `max` bytes of a file from `offset` on.
pub fn read_range(path: &Path, offset: u64, max: u64) -> Result<Vec<u8>, FileError> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path).map_err(file_error("open", path))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .map_err(file_error("read", path))?;
    let mut bytes = Vec::new();
    file.take(max)
        .read_to_end(&mut bytes)
        .map_err(file_error("read", path))?;
    Ok(bytes)
}

/// Creates a directory (and its parents) with mode 0700 if it does not exist.
pub fn create_private_dir(path: &Path) -> Result<(), FileError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(file_error("create the directory", path))
}

use std::os::unix::fs::DirBuilderExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_with_their_mode() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("secret");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(directory.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}

/// A config file that cannot be read or parsed; the message names the file and, for a parse error,
/// the key and the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Reads a TOML config file into `T` (whose unknown keys serde refuses by name).
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| {
        let line = error
            .span()
            .map(|span| {
                format!(
                    " (at line {})",
                    text[..span.start.min(text.len())].matches('\n').count() + 1
                )
            })
            .unwrap_or_default();
        ConfigFileError::Parse {
            path: path.to_owned(),
            message: format!("{}{line}", error.message()),
        }
    })
}
