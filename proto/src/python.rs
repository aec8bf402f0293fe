//! A cluster's Python dependencies as Muster carries them: pip requirements, and the wheels to
//! install them from where hosts have no package index, checked the same way by the CLI (before
//! anything is sent) and the coordinator (before anything is stored), and named by a
//! content-addressed revision.
//!
//! A requirement is a package and its versions, nothing else: an option (`--index-url`, `-r`,
//! `-e`), a URL or a path would let the requirements reach past the host's own pip configuration
//! and the cluster's wheelhouse.

use crate::services::sha256;
use crate::v1::PythonWheel;

pub mod package;

/// The longest requirements text.
pub const MAX_REQUIREMENTS_BYTES: usize = 64 * 1024;
/// The most wheels of a cluster.
pub const MAX_WHEELS: usize = 256;
/// The largest wheel (each is one row of the coordinator's database, whose MySQL/MariaDB
/// `max_allowed_packet` is 16 MiB by default).
pub const MAX_WHEEL_BYTES: usize = 8 * 1024 * 1024;
/// The most bytes of all wheels together.
pub const MAX_TOTAL_BYTES: usize = 32 * 1024 * 1024;

/// Why a set of Python dependencies is refused; names the offending line or file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the requirements have {0} bytes; at most {MAX_REQUIREMENTS_BYTES} are taken")]
    RequirementsTooLarge(usize),
    #[error(
        "requirements line {line} {text:?}: only `NAME[EXTRAS] SPECIFIERS` is taken (e.g. `requests==2.31.0`), \
         no option, URL, path or environment marker; packages come from the host's pip configuration or the wheelhouse"
    )]
    Requirement { line: usize, text: String },
    #[error("requirement {0:?} is given twice")]
    Twice(String),
    #[error(
        "wheel {0:?}: not a wheel file name (NAME-VERSION-TAGS.whl of letters, digits, `_`, `.`, `+`, `!`, `-`)"
    )]
    WheelName(String),
    #[error("wheel {0:?} is given twice")]
    WheelTwice(String),
    #[error("wheel {0:?} is not a wheel: a wheel is a zip archive")]
    NotAWheel(String),
    #[error("wheel {name:?} has {bytes} bytes; at most {MAX_WHEEL_BYTES} are taken")]
    WheelTooLarge { name: String, bytes: usize },
    #[error("{0} wheels; at most {MAX_WHEELS} are taken")]
    TooManyWheels(usize),
    #[error("the wheels have {0} bytes in all; at most {MAX_TOTAL_BYTES} are taken")]
    TooLargeInAll(usize),
    #[error("a wheelhouse without requirements installs nothing: give the requirements too")]
    WheelsWithoutRequirements,
    #[error(
        "package {0:?}: not a Python package name (letters, digits, `_`; not starting with a digit)"
    )]
    PackageName(String),
    #[error("package {package:?}: {path:?}: {reason}")]
    PackageFile {
        package: String,
        path: String,
        reason: String,
    },
    #[error("package {0:?} has no __init__.py: a package is a directory with one")]
    PackageWithoutInit(String),
    #[error("package {package:?}: {what}")]
    PackageTooLarge { package: String, what: String },
    #[error("wheel {0:?} is marked as a package but is not one as Muster builds them")]
    NotAPackageWheel(String),
    #[error("package {0:?} is given twice")]
    PackageTwice(String),
}

/// A requirement's package name, lowercased with `_` and `.` as `-` (PEP 503), when `line` is
/// `NAME[EXTRAS] SPECIFIERS` and nothing else.
fn requirement_name(line: &str) -> Option<String> {
    let name_end = line
        .find(|character: char| !(character.is_ascii_alphanumeric() || "._-".contains(character)))
        .unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    if name.is_empty()
        || name.len() > 100
        || !name.starts_with(|character: char| character.is_ascii_alphanumeric())
        || !name.ends_with(|character: char| character.is_ascii_alphanumeric())
    {
        return None;
    }
    rest = rest.trim_start();
    if let Some(extras) = rest.strip_prefix('[') {
        let (inside, after) = extras.split_once(']')?;
        let extras_valid = inside.split(',').all(|extra| {
            let extra = extra.trim();
            !extra.is_empty()
                && extra
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || "._-".contains(character))
        });
        if !extras_valid {
            return None;
        }
        rest = after.trim_start();
    }
    if !rest.is_empty() {
        for specifier in rest.split(',') {
            let specifier = specifier.trim();
            let operator_end = specifier
                .find(|character: char| !"=!<>~".contains(character))
                .unwrap_or(specifier.len());
            let (operator, version) = specifier.split_at(operator_end);
            let version = version.trim();
            let known = ["==", "!=", "<=", ">=", "~=", "<", ">", "==="].contains(&operator);
            let version_valid = !version.is_empty()
                && version.len() <= 64
                && version.chars().all(|character| {
                    character.is_ascii_alphanumeric() || ".*+!_-".contains(character)
                });
            if !known || !version_valid {
                return None;
            }
        }
    }
    Some(name.to_ascii_lowercase().replace(['_', '.'], "-"))
}

/// The requirements checked: each line a requirement, a comment or blank. Returns the names
/// they require.
pub fn checked_requirements(text: &str) -> Result<Vec<String>, Refused> {
    if text.len() > MAX_REQUIREMENTS_BYTES {
        return Err(Refused::RequirementsTooLarge(text.len()));
    }
    let mut names = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = match raw.find(" #") {
            Some(at) => &raw[..at],
            None => raw,
        }
        .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = requirement_name(line).ok_or_else(|| Refused::Requirement {
            line: index + 1,
            text: raw.trim().chars().take(200).collect(),
        })?;
        if names.contains(&name) {
            return Err(Refused::Twice(name));
        }
        names.push(name);
    }
    Ok(names)
}

/// Whether `name` is a wheel's file name, and never a path.
pub fn valid_wheel_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".whl") else {
        return false;
    };
    stem.len() <= 200
        && stem.split('-').count() >= 5
        && !stem.starts_with(['.', '-'])
        && stem
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "_.+!-".contains(character))
}

/// Whether `text` is a SHA-256 as Muster writes it (64 lowercase hex digits): a revision or a
/// wheel's hash, which agents use in file names.
pub fn valid_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .chars()
            .all(|character| character.is_ascii_digit() || ('a'..='f').contains(&character))
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The wheels checked, with their hashes and sizes set, in name order (contents kept).
pub fn checked_wheels(
    requirements: &str,
    wheels: &[PythonWheel],
) -> Result<Vec<PythonWheel>, Refused> {
    let required = checked_requirements(requirements)?;
    if wheels.is_empty() {
        return Ok(Vec::new());
    }
    // A package is installed by its path; the wheelhouse's wheels only as requirements name them.
    if required.is_empty() && wheels.iter().any(|wheel| !wheel.package) {
        return Err(Refused::WheelsWithoutRequirements);
    }
    let mut packages = std::collections::BTreeSet::new();
    if wheels.len() > MAX_WHEELS {
        return Err(Refused::TooManyWheels(wheels.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    let mut checked = Vec::with_capacity(wheels.len());
    for wheel in wheels {
        if !valid_wheel_name(&wheel.name) {
            return Err(Refused::WheelName(wheel.name.clone()));
        }
        if !seen.insert(wheel.name.clone()) {
            return Err(Refused::WheelTwice(wheel.name.clone()));
        }
        if wheel.content.len() > MAX_WHEEL_BYTES {
            return Err(Refused::WheelTooLarge {
                name: wheel.name.clone(),
                bytes: wheel.content.len(),
            });
        }
        if !wheel.content.starts_with(b"PK\x03\x04") {
            return Err(Refused::NotAWheel(wheel.name.clone()));
        }
        if wheel.package {
            let (name, _) = package::files(wheel)?;
            if !packages.insert(name.clone()) {
                return Err(Refused::PackageTwice(name));
            }
        }
        total += wheel.content.len();
        checked.push(PythonWheel {
            name: wheel.name.clone(),
            sha256: sha256_bytes(&wheel.content),
            size: wheel.content.len() as u64,
            content: wheel.content.clone(),
            package: wheel.package,
        });
    }
    if total > MAX_TOTAL_BYTES {
        return Err(Refused::TooLargeInAll(total));
    }
    checked.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(checked)
}

/// What a set of Python dependencies holds, for people: `N requirement(s): A, B; N wheel(s)`
/// (`requirements` their names), and `; package(s): billing` when it has packages.
pub fn summary(requirements: &[String], wheels: &[PythonWheel]) -> String {
    let packages: Vec<&str> = wheels
        .iter()
        .filter(|wheel| wheel.package)
        .map(|wheel| wheel.name.split('-').next().unwrap_or_default())
        .collect();
    let mut summary = format!("{} requirement(s)", requirements.len());
    if !requirements.is_empty() {
        summary.push_str(&format!(": {}", requirements.join(", ")));
    }
    summary.push_str(&format!("; {} wheel(s)", wheels.len() - packages.len()));
    if !packages.is_empty() {
        summary.push_str(&format!("; package(s): {}", packages.join(", ")));
    }
    summary
}

/// The revision of a set of Python dependencies: the SHA-256 of the requirements' hash and the
/// wheels' `wheel NAME SHA256` lines (`package NAME SHA256` for a package's); empty for none.
pub fn revision(requirements: &str, wheels: &[PythonWheel]) -> String {
    if requirements.trim().is_empty() && wheels.is_empty() {
        return String::new();
    }
    let mut lines: Vec<String> = wheels
        .iter()
        .map(|wheel| {
            let kind = if wheel.package { "package" } else { "wheel" };
            format!("{kind} {} {}\n", wheel.name, wheel.sha256)
        })
        .collect();
    lines.sort();
    lines.insert(0, format!("requirements {}\n", sha256(requirements)));
    sha256(&lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel(name: &str, content: &[u8]) -> PythonWheel {
        PythonWheel {
            name: name.into(),
            content: content.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_requirement_is_a_package_and_its_versions() {
        assert_eq!(
            checked_requirements(
                "# pinned\n\ninflection==0.5.1\nRequests[socks, security] >=2.28,<3  # HTTP\nzope.interface\n"
            )
            .unwrap(),
            ["inflection", "requests", "zope-interface"]
        );
        for bad in [
            "--index-url http://example.com/simple",
            "-r other.txt",
            "-e .",
            "https://example.com/x.whl",
            "./wheels/x.whl",
            "x @ https://example.com/x.zip",
            "x==1; python_version<'3.8'",
            "x==",
            "x=1",
            "x[a",
            "-x",
        ] {
            assert!(
                matches!(
                    checked_requirements(&format!("ok==1\n{bad}\n")),
                    Err(Refused::Requirement { line: 2, .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            checked_requirements("a==1\nA==2\n"),
            Err(Refused::Twice("a".into()))
        );
    }

    #[test]
    fn wheels_are_named_zip_archives_beside_requirements() {
        let good = wheel("inflection-0.5.1-py2.py3-none-any.whl", b"PK\x03\x04rest");
        let checked = checked_wheels("inflection==0.5.1\n", std::slice::from_ref(&good)).unwrap();
        assert_eq!(checked[0].size, 8);
        assert_eq!(checked[0].sha256, sha256_bytes(b"PK\x03\x04rest"));
        for bad in [
            "x.whl",
            "../a-1-py3-none-any.whl",
            "a-1-py3-none-any.zip",
            "a/b-1-py3-none-any.whl",
        ] {
            assert_eq!(
                checked_wheels("a\n", &[wheel(bad, b"PK\x03\x04")]),
                Err(Refused::WheelName(bad.into()))
            );
        }
        assert_eq!(
            checked_wheels("a\n", &[wheel("a-1-py3-none-any.whl", b"#!/bin/sh")]),
            Err(Refused::NotAWheel("a-1-py3-none-any.whl".into()))
        );
        assert_eq!(
            checked_wheels("# nothing\n", std::slice::from_ref(&good)),
            Err(Refused::WheelsWithoutRequirements)
        );
        assert_eq!(
            checked_wheels("a\n", &[good.clone(), good]),
            Err(Refused::WheelTwice(
                "inflection-0.5.1-py2.py3-none-any.whl".into()
            ))
        );
    }

    #[test]
    fn a_revision_changes_with_the_requirements_or_a_wheel() {
        let wheels =
            checked_wheels("a==1\n", &[wheel("a-1-py3-none-any.whl", b"PK\x03\x04")]).unwrap();
        let base = revision("a==1\n", &wheels);
        assert_eq!(base.len(), 64);
        assert_ne!(base, revision("a==2\n", &wheels));
        assert_ne!(base, revision("a==1\n", &[]));
        assert_eq!(revision("", &[]), "");
        assert!(valid_sha256(&base));
        for bad in ["", "../x", &base[..63], &base.to_uppercase()] {
            assert!(!valid_sha256(bad), "{bad}");
        }
    }
}
