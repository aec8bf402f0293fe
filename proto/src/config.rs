//! A cluster's configuration as Muster carries it: enmasse files (Zato's objects as YAML) and the
//! values of their `{Zato_Enmasse_Env.NAME}` placeholders, checked the same way by the CLI and the
//! coordinator. A placeholder without a value is refused, named: Zato's enmasse would silently
//! put `Missing_Value_NAME` in its place.

use std::collections::{BTreeMap, BTreeSet};

use crate::services::sha256;
use crate::v1::{EnmasseFile, EnmasseObject};

/// The most enmasse files a cluster's configuration may have.
pub const MAX_FILES: usize = 32;
/// The largest enmasse file.
pub const MAX_FILE_BYTES: usize = 512 * 1024;
/// The most bytes of all enmasse files together (they travel in one request and in the importing
/// server's desired state).
pub const MAX_TOTAL_BYTES: usize = 2 * 1024 * 1024;
/// The most env values, and the longest one.
pub const MAX_ENV_VALUES: usize = 256;
pub const MAX_ENV_VALUE_BYTES: usize = 4096;
/// What starts a placeholder enmasse fills from its env file.
const PLACEHOLDER: &str = "{Zato_Enmasse_Env.";

/// Why a configuration is refused; names the offending file or value (never a value's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "enmasse file {0:?}: not a YAML file name (NAME.yaml or NAME.yml; letters, digits, `_`, `-`, `.`)"
    )]
    Name(String),
    #[error("enmasse file {0:?} is given twice")]
    Twice(String),
    #[error("enmasse file {name:?} has {bytes} bytes; at most {MAX_FILE_BYTES} are taken")]
    TooLarge { name: String, bytes: usize },
    #[error("enmasse file {0:?} is empty or holds a NUL character")]
    Empty(String),
    #[error("{0} enmasse files; at most {MAX_FILES} are taken")]
    TooMany(usize),
    #[error("the enmasse files have {0} bytes in all; at most {MAX_TOTAL_BYTES} are taken")]
    TooLargeInAll(usize),
    #[error("env value name {0:?}: letters, digits and `_`, not starting with a digit")]
    EnvName(String),
    #[error(
        "env value {0}: empty, longer than {MAX_ENV_VALUE_BYTES} bytes, or holding a line break or NUL"
    )]
    EnvValue(String),
    #[error("{0} env values; at most {MAX_ENV_VALUES} are taken")]
    TooManyEnvValues(usize),
    #[error(
        "enmasse file {file:?} uses {{Zato_Enmasse_Env.{name}}}, which has no value: give it in the env file"
    )]
    Missing { file: String, name: String },
    #[error("enmasse file {file:?} is not what enmasse reads: {reason}")]
    NotEnmasse { file: String, reason: String },
}

/// The objects of an enmasse file, in file order, read as enmasse reads it: YAML whose top level
/// maps each section to a list of objects, after its placeholders are filled in (here with a
/// stand-in: the values are not needed to name the objects). An object without a `name` is not
/// listed. The reason, when it is not such a file, names a line, never a value.
pub fn objects(text: &str) -> Result<Vec<EnmasseObject>, String> {
    use yaml_rust2::{Yaml, YamlLoader};
    let mut filled = text.to_owned();
    while let Some(at) = filled.find(PLACEHOLDER) {
        let end = filled[at..]
            .find('}')
            .map_or(filled.len(), |end| at + end + 1);
        filled.replace_range(at..end, "placeholder");
    }
    let documents = YamlLoader::load_from_str(&filled)
        .map_err(|error| format!("YAML: {} at line {}", error.info(), error.marker().line()))?;
    let mut objects = Vec::new();
    let Some(document) = documents.first() else {
        return Ok(objects);
    };
    let Some(sections) = document.as_hash() else {
        return Err(
            "its top level is not a mapping of sections (channel_rest: ..., security: ...)"
                .to_owned(),
        );
    };
    for (section, items) in sections {
        let Some(section) = section.as_str() else {
            return Err("a section's name is not text".to_owned());
        };
        let items = match items {
            Yaml::Array(items) => items.as_slice(),
            Yaml::Null => &[],
            _ => return Err(format!("section {section:?} is not a list of objects")),
        };
        for item in items {
            let field = |key: &str| {
                item.as_hash()
                    .and_then(|fields| fields.get(&Yaml::String(key.to_owned())))
                    .and_then(Yaml::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let name = field("name");
            if name.is_empty() {
                continue;
            }
            objects.push(EnmasseObject {
                section: section.to_owned(),
                kind: if section == "security" {
                    field("type")
                } else {
                    String::new()
                },
                name,
            });
        }
    }
    Ok(objects)
}

/// Whether `name` is an enmasse file's name Muster takes (NAME.yaml or NAME.yml, a plain file
/// name).
pub fn valid_name(name: &str) -> bool {
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"));
    stem.is_some_and(|stem| {
        !stem.is_empty()
            && stem.len() <= 100
            && !stem.starts_with('.')
            && stem
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || "_-.".contains(character))
    })
}

fn valid_env_name(name: &str) -> bool {
    crate::validate::python_identifier(name)
}

/// The names of the placeholders `text` uses, in order of first use; those on YAML comment
/// lines do not count (enmasse fills them in too, harmlessly).
pub fn placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
    {
        let mut rest = line;
        while let Some(at) = rest.find(PLACEHOLDER) {
            rest = &rest[at + PLACEHOLDER.len()..];
            let Some(end) = rest.find('}') else { break };
            let name = rest[..end].to_owned();
            if !found.contains(&name) {
                found.push(name);
            }
            rest = &rest[end..];
        }
    }
    found
}

/// The files checked, with their hashes set, in name order; the env values checked, and every
/// placeholder given a value.
pub fn checked(
    files: &[EnmasseFile],
    env: &BTreeMap<String, String>,
) -> Result<Vec<EnmasseFile>, Refused> {
    if files.len() > MAX_FILES {
        return Err(Refused::TooMany(files.len()));
    }
    if env.len() > MAX_ENV_VALUES {
        return Err(Refused::TooManyEnvValues(env.len()));
    }
    for (name, value) in env {
        if !valid_env_name(name) {
            return Err(Refused::EnvName(name.clone()));
        }
        if value.is_empty()
            || value.len() > MAX_ENV_VALUE_BYTES
            || value.contains(['\n', '\r', '\0'])
        {
            return Err(Refused::EnvValue(name.clone()));
        }
    }
    let mut seen = BTreeSet::new();
    let mut checked = Vec::with_capacity(files.len());
    for file in files {
        if !valid_name(&file.name) {
            return Err(Refused::Name(file.name.clone()));
        }
        if !seen.insert(file.name.clone()) {
            return Err(Refused::Twice(file.name.clone()));
        }
        if file.content.trim().is_empty() || file.content.contains('\0') {
            return Err(Refused::Empty(file.name.clone()));
        }
        if file.content.len() > MAX_FILE_BYTES {
            return Err(Refused::TooLarge {
                name: file.name.clone(),
                bytes: file.content.len(),
            });
        }
        objects(&file.content).map_err(|reason| Refused::NotEnmasse {
            file: file.name.clone(),
            reason,
        })?;
        if let Some(name) = placeholders(&file.content)
            .into_iter()
            .find(|name| !env.contains_key(name))
        {
            return Err(Refused::Missing {
                file: file.name.clone(),
                name,
            });
        }
        checked.push(EnmasseFile {
            name: file.name.clone(),
            sha256: sha256(&file.content),
            content: file.content.clone(),
        });
    }
    let total: usize = checked.iter().map(|file| file.content.len()).sum();
    if total > MAX_TOTAL_BYTES {
        return Err(Refused::TooLargeInAll(total));
    }
    checked.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(checked)
}

/// The values of an env file as Zato's enmasse reads it (`--env-file`): `NAME=VALUE` lines in
/// its `[env]` section; `#` starts a comment line.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    let mut in_env = false;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            in_env = line == "[env]";
            continue;
        }
        if !in_env {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("line {}: not NAME=VALUE", index + 1));
        };
        values.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    Ok(values)
}

/// The objects a configuration's agent must delete once the new files are imported: those still
/// `pending` from revisions not imported yet and those of the files `before`, less those the new
/// files hold (`now`), by section and name, in order, each once.
pub fn removals(
    pending: &[EnmasseObject],
    before: &[EnmasseObject],
    now: &[EnmasseObject],
) -> Vec<EnmasseObject> {
    let mut removals: Vec<EnmasseObject> = Vec::new();
    for object in pending.iter().chain(before) {
        let same =
            |other: &EnmasseObject| other.section == object.section && other.name == object.name;
        if !now.iter().any(same) && !removals.iter().any(same) {
            removals.push(object.clone());
        }
    }
    removals
}

/// The files' part of a configuration revision: the SHA-256 of their `NAME SHA256` lines.
pub fn files_revision(files: &[EnmasseFile]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|file| format!("{} {}\n", file.name, file.sha256))
        .collect();
    lines.sort();
    sha256(&lines.concat())
}

/// A configuration's revision: its files' and its env values', the latter keyed by `key` (a
/// cluster secret), so that the revision, which is shown, reveals nothing of the values. Empty
/// for no file.
pub fn revision(files: &[EnmasseFile], env: &BTreeMap<String, String>, key: &str) -> String {
    if files.is_empty() {
        return String::new();
    }
    let env_text: String = env
        .iter()
        .map(|(name, value)| format!("{name}={value}\n"))
        .collect();
    let env_digest = crate::services::keyed_sha256(key, &env_text);
    sha256(&format!("{}\n{env_digest}\n", files_revision(files)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &str) -> EnmasseFile {
        EnmasseFile {
            name: name.into(),
            content: content.into(),
            ..Default::default()
        }
    }

    const API: &str = "security:\n  - name: orders.basic\n    type: basic_auth\n    \
                       password: \"{Zato_Enmasse_Env.ORDERS_PASSWORD}\"\n";

    #[test]
    fn a_placeholder_without_a_value_is_refused_by_name() {
        let refused = checked(&[file("api.yaml", API)], &BTreeMap::new()).unwrap_err();
        assert_eq!(
            refused,
            Refused::Missing {
                file: "api.yaml".into(),
                name: "ORDERS_PASSWORD".into()
            }
        );
        assert!(
            refused
                .to_string()
                .contains("{Zato_Enmasse_Env.ORDERS_PASSWORD}")
        );
        let env = BTreeMap::from([("ORDERS_PASSWORD".to_owned(), "s3cret".to_owned())]);
        assert_eq!(checked(&[file("api.yaml", API)], &env).unwrap().len(), 1);
        let commented = format!("# {{Zato_Enmasse_Env.NAME}} takes its value...\n{API}");
        assert_eq!(placeholders(&commented), ["ORDERS_PASSWORD"]);
    }

    #[test]
    fn names_and_values_are_checked_without_showing_a_value() {
        let env = BTreeMap::from([("X".to_owned(), "hunter\n2".to_owned())]);
        let refused = checked(&[], &env).unwrap_err();
        assert!(!refused.to_string().contains("hunter"), "{refused}");
        for bad in ["api.json", "../a.yaml", ".yaml", "a b.yaml"] {
            assert_eq!(
                checked(&[file(bad, "x: []")], &BTreeMap::new()),
                Err(Refused::Name(bad.into()))
            );
        }
    }

    #[test]
    fn the_revision_follows_values_without_revealing_them() {
        let files = checked(
            &[file("api.yaml", API)],
            &BTreeMap::from([("ORDERS_PASSWORD".to_owned(), "a".to_owned())]),
        )
        .unwrap();
        let one = BTreeMap::from([("ORDERS_PASSWORD".to_owned(), "a".to_owned())]);
        let other = BTreeMap::from([("ORDERS_PASSWORD".to_owned(), "b".to_owned())]);
        assert_ne!(revision(&files, &one, "k"), revision(&files, &other, "k"));
        assert_ne!(
            revision(&files, &one, "k"),
            revision(&files, &one, "other key")
        );
        assert_eq!(revision(&files, &one, "k"), revision(&files, &one, "k"));
        assert_eq!(revision(&[], &one, "k"), "");
    }

    #[test]
    fn objects_are_named_by_section_and_name_and_what_is_not_enmasse_is_refused_by_line() {
        let api = format!(
            "{API}\nchannel_rest:\n  - name: orders.get\n    security: {{Zato_Enmasse_Env.SEC}}\n\n\
             scheduler:\n  - service: zato.ping\n  - name: tick\n\npubsub_topic:\n"
        );
        let named: Vec<(String, String, String)> = objects(&api)
            .unwrap()
            .into_iter()
            .map(|object| (object.section, object.name, object.kind))
            .collect();
        assert_eq!(
            named,
            [
                (
                    "security".into(),
                    "orders.basic".into(),
                    "basic_auth".into()
                ),
                ("channel_rest".into(), "orders.get".into(), String::new()),
                ("scheduler".into(), "tick".into(), String::new()),
            ]
        );
        let env = BTreeMap::from([("ORDERS_PASSWORD".to_owned(), "hunter2".to_owned())]);
        for (text, says) in [
            ("security:\n  - name: a\n   type: [\n", "line"),
            ("- name: a\n", "top level"),
            ("security: basic\n", "\"security\" is not a list"),
        ] {
            let refused = checked(&[file("api.yaml", text)], &env).unwrap_err();
            assert!(
                matches!(&refused, Refused::NotEnmasse { file, reason } if file == "api.yaml" && reason.contains(says)),
                "{text:?}: {refused}"
            );
        }
    }

    #[test]
    fn removals_are_what_left_the_files_since_the_last_import_each_once() {
        let object = |section: &str, name: &str| EnmasseObject {
            section: section.into(),
            name: name.into(),
            kind: String::new(),
        };
        let (a, b, c) = (
            object("channel_rest", "a"),
            object("security", "b"),
            object("scheduler", "c"),
        );
        let names = |objects: Vec<EnmasseObject>| -> Vec<String> {
            objects.into_iter().map(|object| object.name).collect()
        };
        // A leaves, then B, then A comes back, all before an import: B goes.
        let pending = removals(&[], &[a.clone(), b.clone()], std::slice::from_ref(&b));
        assert_eq!(names(pending.clone()), ["a"]);
        let pending = removals(&pending, std::slice::from_ref(&b), std::slice::from_ref(&c));
        assert_eq!(names(pending.clone()), ["a", "b"]);
        assert_eq!(
            names(removals(
                &pending,
                std::slice::from_ref(&c),
                &[a, c.clone()]
            )),
            ["b"]
        );
        // Same name in another section is another object.
        assert_eq!(
            removals(
                &[],
                &[object("channel_rest", "x")],
                &[object("outgoing_rest", "x")]
            ),
            [object("channel_rest", "x")]
        );
    }

    #[test]
    fn an_env_file_is_read_as_enmasse_reads_it() {
        let values =
            parse_env_file("# values\n[env]\nORDERS_PASSWORD = s3cret=x\n\n[other]\nY=1\n")
                .unwrap();
        assert_eq!(
            values,
            BTreeMap::from([("ORDERS_PASSWORD".to_owned(), "s3cret=x".to_owned())])
        );
        assert!(
            parse_env_file("[env]\njunk\n")
                .unwrap_err()
                .contains("line 2")
        );
    }
}
