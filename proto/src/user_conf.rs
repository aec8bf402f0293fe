//! A cluster's user-config files as Muster carries them: the `NAME.ini` and `NAME.conf` files a
//! Zato server reads into its services' `self.config.NAME` (Zato 3.2 reads every such file of
//! its `pickup/incoming/user-conf` directory at start, and one at a time through its
//! `zato.pickup.on-update-user-conf` service). They often hold credentials, so Muster treats
//! their content as secret: sealed at rest, never shown, never written back; their revision is
//! keyed with a cluster secret so that it reveals nothing of them.
//!
//! Zato parses them with ConfigObj; one it cannot parse is logged and read as empty, so that a
//! service finds none of its values. They are checked here, by the CLI and the coordinator,
//! before anything changes: ConfigObj's grammar as far as such files use it (sections `[name]`
//! and nested `[[name]]`, `key = value` with an optional `'''`/`"""` multi-line value, `#`
//! comments), and the duplicates ConfigObj refuses.

use std::collections::BTreeSet;

use crate::services::sha256;
use crate::v1::UserConfFile;

/// The most user-config files a cluster may have.
pub const MAX_FILES: usize = 64;
/// The largest file.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// The most bytes of all files together (they travel in every server's desired state).
pub const MAX_TOTAL_BYTES: usize = 1024 * 1024;

/// Why user-config files are refused; names the offending file and line (never a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "user-config file {0:?}: not a name Zato reads (NAME.ini or NAME.conf; letters, digits, `_`, `-`; not env.ini)"
    )]
    Name(String),
    #[error(
        "user-config file {0:?} is given twice (or as both .ini and .conf: Zato names both NAME)"
    )]
    Twice(String),
    #[error("user-config file {name:?} has {bytes} bytes; at most {MAX_FILE_BYTES} are taken")]
    TooLarge { name: String, bytes: usize },
    #[error("user-config file {0:?} holds a NUL character")]
    Nul(String),
    #[error("{0} user-config files; at most {MAX_FILES} are taken")]
    TooMany(usize),
    #[error("the user-config files have {0} bytes in all; at most {MAX_TOTAL_BYTES} are taken")]
    TooLargeInAll(usize),
    #[error("user-config file {file:?}, line {line}: {reason} (Zato would read the file as empty)")]
    Syntax {
        file: String,
        line: usize,
        reason: String,
    },
}

/// Whether Zato reads a file of this name, and it is safe as a file name: `NAME.ini` or
/// `NAME.conf` (Zato's `env.ini` is its environment variables, not user config).
pub fn valid_name(name: &str) -> bool {
    let stem = name
        .strip_suffix(".ini")
        .or_else(|| name.strip_suffix(".conf"));
    stem.is_some_and(|stem| {
        !stem.is_empty()
            && stem.len() <= 100
            && name != "env.ini"
            && stem
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || "_-".contains(character))
    })
}

/// The name services use for a file: Zato's `get_user_config_name`, up to the first `.`.
pub fn config_name(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

/// The files checked, in name order.
pub fn checked(files: &[UserConfFile]) -> Result<Vec<UserConfFile>, Refused> {
    if files.len() > MAX_FILES {
        return Err(Refused::TooMany(files.len()));
    }
    let mut seen = BTreeSet::new();
    let mut checked = Vec::with_capacity(files.len());
    for file in files {
        if !valid_name(&file.name) {
            return Err(Refused::Name(file.name.clone()));
        }
        if !seen.insert(config_name(&file.name).to_owned()) {
            return Err(Refused::Twice(file.name.clone()));
        }
        if file.content.contains('\0') {
            return Err(Refused::Nul(file.name.clone()));
        }
        if file.content.len() > MAX_FILE_BYTES {
            return Err(Refused::TooLarge {
                name: file.name.clone(),
                bytes: file.content.len(),
            });
        }
        syntax(&file.content).map_err(|(line, reason)| Refused::Syntax {
            file: file.name.clone(),
            line,
            reason,
        })?;
        checked.push(file.clone());
    }
    let total: usize = checked.iter().map(|file| file.content.len()).sum();
    if total > MAX_TOTAL_BYTES {
        return Err(Refused::TooLargeInAll(total));
    }
    checked.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(checked)
}

/// Checks `text` as ConfigObj parses it; the line (from 1) and the reason when it would not.
/// The reasons never quote a value.
fn syntax(text: &str) -> Result<(), (usize, String)> {
    // The keys and subsections seen at each open section depth (0: the top).
    let mut scopes: Vec<BTreeSet<String>> = vec![BTreeSet::new()];
    let mut open_quote: Option<(&str, usize)> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if let Some((quote, _)) = open_quote {
            if raw.contains(quote) {
                open_quote = None;
            }
            continue;
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            let depth = line
                .chars()
                .take_while(|&character| character == '[')
                .count();
            let header = line.split('#').next().unwrap_or(line).trim_end();
            let closing = header
                .chars()
                .rev()
                .take_while(|&character| character == ']')
                .count();
            let name = header[depth..header.len() - closing].trim();
            if closing != depth || name.is_empty() || name.contains(['[', ']']) {
                return Err((number, "a section header is [name], [[name]], …".to_owned()));
            }
            if depth > scopes.len() {
                return Err((
                    number,
                    format!("section {name:?} is nested deeper than the section it is in"),
                ));
            }
            scopes.truncate(depth);
            if !scopes[depth - 1].insert(name.to_owned()) {
                return Err((number, format!("section {name:?} is given twice")));
            }
            scopes.push(BTreeSet::new());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err((
                number,
                "neither key = value, [section] nor # comment".to_owned(),
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err((number, "a value without a key".to_owned()));
        }
        let scope = scopes.last_mut().expect("the top scope is never closed");
        if !scope.insert(key.to_owned()) {
            return Err((number, format!("key {key:?} is given twice in its section")));
        }
        let value = value.trim_start();
        for quote in ["'''", "\"\"\""] {
            if let Some(rest) = value.strip_prefix(quote)
                && !rest.contains(quote)
            {
                open_quote = Some((quote, number));
            }
        }
    }
    match open_quote {
        Some((_, line)) => Err((line, "a multi-line value that never ends".to_owned())),
        None => Ok(()),
    }
}

/// The files' revision: the SHA-256 of their `NAME SHA256` lines keyed by `key` (a cluster
/// secret), so that the revision, which is shown, reveals nothing of their content. Empty for
/// no file.
pub fn revision(files: &[UserConfFile], key: &str) -> String {
    if files.is_empty() {
        return String::new();
    }
    let mut lines: Vec<String> = files
        .iter()
        .map(|file| format!("{} {}\n", file.name, sha256(&file.content)))
        .collect();
    lines.sort();
    crate::services::keyed_sha256(key, &lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &str) -> UserConfFile {
        UserConfFile {
            name: name.into(),
            content: content.into(),
        }
    }

    #[test]
    fn files_zato_reads_are_taken_in_name_order() {
        let taken = checked(&[
            file(
                "partners.conf",
                "[crm]\naddress = https://crm.example.com\n",
            ),
            file(
                "app.ini",
                "# limits\nmax_items = 20\n[db]\nhost = db1\n[[pool]]\nsize = 5\n\
                 note = '''two\nlines'''\n[billing]\nkey = abc # not a comment to us\n",
            ),
            file("empty.ini", ""),
        ])
        .unwrap();
        let names: Vec<&str> = taken.iter().map(|file| file.name.as_str()).collect();
        assert_eq!(names, ["app.ini", "empty.ini", "partners.conf"]);
    }

    #[test]
    fn names_zato_would_not_read_or_that_are_not_plain_file_names_are_refused() {
        for name in [
            "app.yaml",
            "../app.ini",
            "a/b.ini",
            ".ini",
            "env.ini",
            "app.ini.bak",
            "app.x.ini",
            "app ini.conf",
        ] {
            assert_eq!(
                checked(&[file(name, "")]),
                Err(Refused::Name(name.into())),
                "{name}"
            );
        }
        assert_eq!(
            checked(&[file("app.ini", ""), file("app.conf", "")]),
            Err(Refused::Twice("app.conf".into()))
        );
    }

    #[test]
    fn what_configobj_would_refuse_is_named_by_file_and_line_without_the_value() {
        let refused = |content: &str| match checked(&[file("app.ini", content)]) {
            Err(Refused::Syntax { line, reason, .. }) => (line, reason),
            other => panic!("{content:?}: {other:?}"),
        };
        assert_eq!(refused("[db]\nhost = a\nsecret-without-equals\n").0, 3);
        assert!(
            !refused("password hunter2\n").1.contains("hunter2"),
            "a refusal never quotes the line"
        );
        assert_eq!(refused("[db\nhost = a\n").0, 1);
        assert_eq!(refused("[db]\nhost = a\nhost = b\n").0, 3);
        assert_eq!(refused("[db]\n[db]\n").0, 2);
        assert_eq!(refused("[[pool]]\n").0, 1);
        assert_eq!(refused("[a]\nnote = '''open\n").0, 2);
        assert_eq!(refused("= value\n").0, 1);
        // The same key in two sections, and a section again under another, are fine.
        assert!(checked(&[file("app.ini", "[a]\nk = 1\n[[s]]\n[b]\nk = 2\n[[s]]\n")]).is_ok());
    }

    #[test]
    fn the_revision_follows_the_content_and_the_key_and_is_empty_for_none() {
        let one = checked(&[file("app.ini", "a = 1\n")]).unwrap();
        let other = checked(&[file("app.ini", "a = 2\n")]).unwrap();
        assert_eq!(revision(&one, "k"), revision(&one, "k"));
        assert_ne!(revision(&one, "k"), revision(&other, "k"));
        assert_ne!(revision(&one, "k"), revision(&one, "other key"));
        assert_ne!(revision(&one, "k"), sha256(&one[0].content));
        assert_eq!(revision(&[], "k"), "");
        assert_eq!(revision(&one, "k").len(), 64);
    }
}
