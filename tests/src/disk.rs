//! A small filesystem (a tmpfs of a given size) for tests of what happens when a disk fills up.

use std::path::{Path, PathBuf};

/// A filesystem of its own, mounted for one test and unmounted when dropped.
pub struct SmallFilesystem {
    path: PathBuf,
}

impl SmallFilesystem {
    pub fn mount(path: &Path, size: &str) -> SmallFilesystem {
        std::fs::create_dir_all(path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(mounted.success(), "mount a tmpfs at {}", path.display());
        SmallFilesystem {
            path: path.to_owned(),
        }
    }

    /// Writes a file until the filesystem is full.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}
