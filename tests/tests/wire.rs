//! The protocol's compatibility across releases, checked by the real `buf` (npm's
//! `@bufbuild/buf`, which `.ci/setup` installs): the .proto files against the last released
//! descriptor set in `proto/released/`, by the rule `proto/proto/buf.yaml` names (WIRE_JSON: an
//! agent one release behind the coordinator, and a client of the JSON gateway, keep working;
//! `packaging/docs/wire.md`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_owned()
}

/// The newest descriptor set in `proto/released/` (by version: `MAJOR.MINOR.PATCH.binpb`).
fn last_release() -> PathBuf {
    let released = repository().join("proto/released");
    let version = |path: &Path| -> Option<Vec<u64>> {
        path.file_name()?
            .to_str()?
            .strip_suffix(".binpb")?
            .split('.')
            .map(|part| part.parse().ok())
            .collect()
    };
    std::fs::read_dir(&released)
        .unwrap_or_else(|error| panic!("{}: {error}", released.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| version(path).is_some())
        .max_by_key(|path| version(path))
        .unwrap_or_else(|| panic!("no MAJOR.MINOR.PATCH.binpb in {}", released.display()))
}

/// `buf breaking MODULE --against` the last release.
fn buf_breaking(module: &Path) -> Output {
    let against = last_release();
    Command::new("buf")
        .arg("breaking")
        .arg(module)
        .arg("--against")
        .arg(&against)
        .output()
        .expect("buf, which .ci/setup installs (npm install -g @bufbuild/buf)")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_protocol_keeps_the_wire_of_the_last_release() {
    let checked = buf_breaking(&repository().join("proto/proto"));
    assert!(
        checked.status.success(),
        "a change an agent or client of {} would not understand:\n{}{}",
        last_release().display(),
        text(&checked.stdout),
        text(&checked.stderr)
    );
}

/// The check fails where it must: a field of the desired state renumbered in type, and one
/// removed without being reserved, are each named.
#[test]
fn a_change_an_older_agent_would_misread_is_named() {
    let copy = tempfile::tempdir().unwrap();
    let module = copy.path().join("proto");
    let status = Command::new("cp")
        .arg("-a")
        .arg(repository().join("proto/proto"))
        .arg(&module)
        .status()
        .unwrap();
    assert!(status.success());
    let agent_proto = module.join("muster/v1/agent.proto");
    let original = std::fs::read_to_string(&agent_proto).unwrap();
    for (from, to, named) in [
        (
            "uint64 restart_epoch = 29;",
            "uint32 restart_epoch = 29;",
            "\"restart_epoch\" on message \"Component\" changed type",
        ),
        (
            "  bool python_restart = 23;\n",
            "",
            "Previously present field \"23\" with name \"python_restart\" on message \"Component\" was deleted",
        ),
    ] {
        assert_eq!(original.matches(from).count(), 1, "{from}");
        std::fs::write(&agent_proto, original.replace(from, to)).unwrap();
        let checked = buf_breaking(&module);
        let said = text(&checked.stdout) + &text(&checked.stderr);
        assert!(
            !checked.status.success() && said.contains(named),
            "{from:?} -> {to:?}: {said}"
        );
    }
}
