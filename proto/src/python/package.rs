//! A Python package of a cluster's file (`[python] packages`): the code its services share, as a
//! directory with `__init__.py`. Zato 3.2 imports each uploaded service module on its own, by its
//! file name (`import_module_from_path`), so a module's package and its relative imports mean
//! nothing there; a package reaches the servers instead the way Python dependencies do: on the
//! import path each server starts with. Muster carries it as a wheel it builds itself
//! (`NAME-0+muster.HASH-py3-none-any.whl`, `PythonWheel.package`), which rides with the
//! cluster's other wheels and which pip installs; the CLI and the coordinator build and check it
//! the same way, and `muster get --dir` reads the package's files back out of it.
//!
//! The wheel is a function of the files alone (stored, not compressed; entries in name order;
//! every time at zip's epoch), so the same directory always makes the same bytes, hence the same
//! Python dependencies revision: applying an unchanged file restarts nothing.

use std::io::{Read as _, Write as _};

use base64::Engine as _;

use super::{MAX_WHEEL_BYTES, Refused, sha256_bytes};
use crate::v1::PythonWheel;

/// The most files of one package.
pub const MAX_FILES: usize = 1024;

/// A package's files: each its path inside the package's directory (`/`-separated) and its bytes.
pub type Files = Vec<(String, Vec<u8>)>;

/// Whether `name` may name a package or one of its modules' path parts: a Python identifier of
/// ASCII letters, digits and `_`, not starting with a digit, at most 100 characters.
pub fn valid_name(name: &str) -> bool {
    crate::validate::python_identifier(name)
}

/// Whether `path` (inside the package's directory, `/`-separated) is a module as a package holds
/// them: directories and a file stem that are each [`valid_name`], and `.py`.
fn valid_path(path: &str) -> bool {
    let Some(stem) = path.strip_suffix(".py") else {
        return false;
    };
    stem.split('/').all(valid_name)
}

/// The wheel of package `name` made of `files` (each its path inside the package's directory,
/// `/`-separated, and its bytes): refused, named, when a path is not a module's, the package has
/// no `__init__.py`, or it is larger than a wheel may be.
pub fn wheel(name: &str, files: &[(String, Vec<u8>)]) -> Result<PythonWheel, Refused> {
    let refuse = |path: &str, reason: &str| Refused::PackageFile {
        package: name.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !valid_name(name) {
        return Err(Refused::PackageName(name.to_owned()));
    }
    if files.len() > MAX_FILES {
        return Err(Refused::PackageTooLarge {
            package: name.to_owned(),
            what: format!("{} files; at most {MAX_FILES} are taken", files.len()),
        });
    }
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|left, right| left.0.cmp(&right.0));
    let mut previous: Option<&str> = None;
    for (path, content) in &sorted {
        if !valid_path(path) {
            return Err(refuse(
                path,
                "not a module of a package: directories and NAME.py, each a Python name \
                 (letters, digits, `_`)",
            ));
        }
        if previous == Some(path.as_str()) {
            return Err(refuse(path, "given twice"));
        }
        previous = Some(path);
        if std::str::from_utf8(content).is_err() {
            return Err(refuse(path, "not UTF-8 text"));
        }
    }
    if !sorted.iter().any(|(path, _)| path == "__init__.py") {
        return Err(Refused::PackageWithoutInit(name.to_owned()));
    }
    let contents_hash = sha256_bytes(
        sorted
            .iter()
            .map(|(path, content)| format!("{path} {}\n", sha256_bytes(content)))
            .collect::<String>()
            .as_bytes(),
    );
    let version = format!("0+muster.{}", &contents_hash[..12]);
    let dist_info = format!("{name}-{version}.dist-info");
    let mut entries: Vec<(String, Vec<u8>)> = sorted
        .iter()
        .map(|(path, content)| (format!("{name}/{path}"), content.clone()))
        .collect();
    entries.push((
        format!("{dist_info}/METADATA"),
        format!(
            "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: package {name} \
             of a Muster cluster's file\n"
        )
        .into_bytes(),
    ));
    entries.push((
        format!("{dist_info}/WHEEL"),
        b"Wheel-Version: 1.0\nGenerator: muster\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            .to_vec(),
    ));
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut record: String = entries
        .iter()
        .map(|(path, content)| {
            let digest = ring::digest::digest(&ring::digest::SHA256, content);
            format!(
                "{path},sha256={},{}\n",
                engine.encode(digest.as_ref()),
                content.len()
            )
        })
        .collect();
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    entries.push((format!("{dist_info}/RECORD"), record.into_bytes()));

    let mut archive = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let mut size = 0;
    for (path, content) in &entries {
        size += content.len();
        if size > MAX_WHEEL_BYTES {
            return Err(Refused::PackageTooLarge {
                package: name.to_owned(),
                what: format!(
                    "more than {MAX_WHEEL_BYTES} bytes; at most {MAX_WHEEL_BYTES} are taken"
                ),
            });
        }
        archive
            .start_file(path.as_str(), options)
            .and_then(|()| archive.write_all(content).map_err(Into::into))
            .map_err(|error| refuse(path, &format!("cannot be packed: {error}")))?;
    }
    let content = archive
        .finish()
        .map_err(|error| refuse("", &format!("cannot be packed: {error}")))?
        .into_inner();
    Ok(PythonWheel {
        name: format!("{name}-{version}-py3-none-any.whl"),
        sha256: sha256_bytes(&content),
        size: content.len() as u64,
        content,
        package: true,
    })
}

/// The package a wheel Muster built holds: its name and its files (paths inside the package's
/// directory). Refused unless `wheel` is exactly what [`wheel`] makes of them, so that what is
/// written back, built again, is the same wheel.
pub fn files(wheel: &PythonWheel) -> Result<(String, Files), Refused> {
    let not_ours = || Refused::NotAPackageWheel(wheel.name.clone());
    let name = wheel.name.split('-').next().unwrap_or_default().to_owned();
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(&wheel.content)).map_err(|_| not_ours())?;
    let prefix = format!("{name}/");
    let mut files = Vec::new();
    let mut total = 0usize;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|_| not_ours())?;
        let entry_name = entry.name().map_err(|_| not_ours())?.into_owned();
        let Some(path) = entry_name.strip_prefix(&prefix).map(str::to_owned) else {
            continue;
        };
        total += usize::try_from(entry.size()).unwrap_or(usize::MAX);
        if total > MAX_WHEEL_BYTES {
            return Err(not_ours());
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|_| not_ours())?;
        files.push((path, content));
    }
    match self::wheel(&name, &files) {
        Ok(built) if built.content == wheel.content && built.name == wheel.name => {
            Ok((name, files))
        }
        _ => Err(not_ours()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn billing() -> Files {
        vec![
            ("rules/tax.py".into(), b"RATE = 21\n".to_vec()),
            ("__init__.py".into(), b"".to_vec()),
            (
                "rules/__init__.py".into(),
                b"from .tax import RATE\n".to_vec(),
            ),
        ]
    }

    #[test]
    fn the_same_files_make_the_same_wheel_and_it_gives_them_back() {
        let built = wheel("billing", &billing()).unwrap();
        assert!(built.package);
        assert!(
            built.name.starts_with("billing-0+muster.")
                && built.name.ends_with("-py3-none-any.whl"),
            "{}",
            built.name
        );
        assert!(crate::python::valid_wheel_name(&built.name));
        let mut reordered = billing();
        reordered.reverse();
        assert_eq!(wheel("billing", &reordered).unwrap(), built);
        let (name, mut got) = files(&built).unwrap();
        assert_eq!(name, "billing");
        let mut expected = billing();
        expected.sort();
        got.sort();
        assert_eq!(got, expected);

        let mut changed = billing();
        changed[0].1 = b"RATE = 23\n".to_vec();
        let other = wheel("billing", &changed).unwrap();
        assert_ne!(other.name, built.name);
        assert_ne!(other.sha256, built.sha256);
    }

    #[test]
    fn what_is_not_a_package_is_refused_named() {
        assert_eq!(
            wheel("2fast", &billing()),
            Err(Refused::PackageName("2fast".into()))
        );
        assert_eq!(
            wheel("billing", &billing()[..1]),
            Err(Refused::PackageWithoutInit("billing".into()))
        );
        for bad in [
            "rules/tax.txt",
            "../x.py",
            "rules-x/a.py",
            "a//b.py",
            "/a.py",
        ] {
            let mut files = billing();
            files.push((bad.into(), b"".to_vec()));
            assert!(
                matches!(wheel("billing", &files), Err(Refused::PackageFile { path, .. }) if path == bad),
                "{bad}"
            );
        }
        let mut binary = billing();
        binary.push(("blob.py".into(), vec![0xff, 0xfe]));
        assert!(matches!(
            wheel("billing", &binary),
            Err(Refused::PackageFile { reason, .. }) if reason.contains("UTF-8")
        ));
    }

    #[test]
    fn a_wheel_that_muster_did_not_build_is_not_read_as_a_package() {
        let mut built = wheel("billing", &billing()).unwrap();
        built.content[40] ^= 1;
        assert!(files(&built).is_err());
        let other = PythonWheel {
            name: "inflection-0.5.1-py2.py3-none-any.whl".into(),
            content: b"PK\x03\x04rest".to_vec(),
            ..Default::default()
        };
        assert!(files(&other).is_err());
    }
}
