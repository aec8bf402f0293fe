//! A cluster's services as Muster carries them: a set of Python modules, checked the same way by
//! the CLI (before anything is sent) and the coordinator (before anything is stored), and named by
//! a content-addressed revision.

use crate::v1::ServiceFile;

/// The most modules a cluster's services may have.
pub const MAX_FILES: usize = 256;
/// The largest module.
pub const MAX_FILE_BYTES: usize = 512 * 1024;
/// The most bytes of all modules together (they travel in each server's desired state).
pub const MAX_TOTAL_BYTES: usize = 2 * 1024 * 1024;

/// Why a set of modules is refused; names the offending file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "service file {0:?}: not a Python module name (NAME.py, NAME of letters, digits and `_`, not starting with a digit)"
    )]
    Name(String),
    #[error("service file {0:?} is given twice")]
    Twice(String),
    #[error("service file {name:?} has {bytes} bytes; at most {MAX_FILE_BYTES} are taken")]
    TooLarge { name: String, bytes: usize },
    #[error("service file {0:?} is empty")]
    Empty(String),
    #[error("service file {0:?} holds a NUL character: not Python source")]
    Binary(String),
    #[error("{0} service files; at most {MAX_FILES} are taken")]
    TooMany(usize),
    #[error("the service files have {0} bytes in all; at most {MAX_TOTAL_BYTES} are taken")]
    TooLargeInAll(usize),
}

/// Whether `name` is `NAME.py` with NAME a Python identifier of ASCII letters, digits and `_`:
/// what Zato imports a deployed file as, and never a path.
pub fn valid_name(name: &str) -> bool {
    name.strip_suffix(".py")
        .is_some_and(crate::validate::python_identifier)
}

/// The lowercase hex SHA-256 of `content` (what Zato records of a deployed module).
pub fn sha256(content: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, content.as_bytes()).as_ref())
}

/// The lowercase hex HMAC-SHA-256 of `content` keyed by `key` (a cluster secret): a revision of
/// secrets that reveals nothing of them.
pub fn keyed_sha256(key: &str, content: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    hex(ring::hmac::sign(&key, content.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The modules checked, with their hashes set, in name order.
pub fn checked(files: &[ServiceFile]) -> Result<Vec<ServiceFile>, Refused> {
    if files.len() > MAX_FILES {
        return Err(Refused::TooMany(files.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    let mut checked = Vec::with_capacity(files.len());
    for file in files {
        if !valid_name(&file.name) {
            return Err(Refused::Name(file.name.clone()));
        }
        if !seen.insert(file.name.clone()) {
            return Err(Refused::Twice(file.name.clone()));
        }
        if file.content.trim().is_empty() {
            return Err(Refused::Empty(file.name.clone()));
        }
        if file.content.len() > MAX_FILE_BYTES {
            return Err(Refused::TooLarge {
                name: file.name.clone(),
                bytes: file.content.len(),
            });
        }
        if file.content.contains('\0') {
            return Err(Refused::Binary(file.name.clone()));
        }
        total += file.content.len();
        checked.push(ServiceFile {
            name: file.name.clone(),
            sha256: sha256(&file.content),
            content: file.content.clone(),
        });
    }
    if total > MAX_TOTAL_BYTES {
        return Err(Refused::TooLargeInAll(total));
    }
    checked.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(checked)
}

/// The revision of a set of modules: the SHA-256 of its `NAME SHA256` lines in name order; empty
/// for no module.
pub fn revision(files: &[ServiceFile]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let mut lines: Vec<String> = files
        .iter()
        .map(|file| format!("{} {}\n", file.name, file.sha256))
        .collect();
    lines.sort();
    sha256(&lines.concat())
}

/// A revision as people read it: its first 12 characters.
pub fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &str) -> ServiceFile {
        ServiceFile {
            name: name.into(),
            content: content.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_are_python_modules_and_never_paths() {
        for good in ["a.py", "orders_api.py", "_x1.py"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "a", ".py", "1a.py", "a-b.py", "../a.py", "a/b.py", "a.py.py", "ä.py", "a.txt",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_revision_depends_on_names_and_contents_not_on_order() {
        let one = checked(&[file("b.py", "x = 1\n"), file("a.py", "y = 2\n")]).unwrap();
        let other = checked(&[file("a.py", "y = 2\n"), file("b.py", "x = 1\n")]).unwrap();
        assert_eq!(revision(&one), revision(&other));
        assert_eq!(one[0].name, "a.py", "in name order");
        assert_eq!(one[1].sha256, sha256("x = 1\n"));
        assert_eq!(
            sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "FIPS 180-2's test vector"
        );
        let changed = checked(&[file("a.py", "y = 3\n"), file("b.py", "x = 1\n")]).unwrap();
        assert_ne!(revision(&one), revision(&changed));
        assert_eq!(revision(&[]), "");
    }

    #[test]
    fn what_is_not_a_small_set_of_python_files_is_refused_by_name() {
        assert_eq!(
            checked(&[file("a.py", "x"), file("a.py", "y")]),
            Err(Refused::Twice("a.py".into()))
        );
        assert_eq!(
            checked(&[file("../etc.py", "x")]),
            Err(Refused::Name("../etc.py".into()))
        );
        assert_eq!(
            checked(&[file("a.py", "\n")]),
            Err(Refused::Empty("a.py".into()))
        );
        assert_eq!(
            checked(&[file("a.py", "x\0")]),
            Err(Refused::Binary("a.py".into()))
        );
        let big = "#".repeat(MAX_FILE_BYTES + 1);
        assert!(matches!(
            checked(&[file("a.py", &big)]),
            Err(Refused::TooLarge { .. })
        ));
        let many: Vec<ServiceFile> = (0..=MAX_FILES)
            .map(|index| file(&format!("m{index}.py"), "x"))
            .collect();
        assert_eq!(checked(&many), Err(Refused::TooMany(MAX_FILES + 1)));
        let half = "#".repeat(MAX_FILE_BYTES);
        let five: Vec<ServiceFile> = (0..5)
            .map(|index| file(&format!("m{index}.py"), &half))
            .collect();
        assert!(matches!(checked(&five), Err(Refused::TooLargeInAll(_))));
    }
}
