//! The ledger: the last desired state this host accepted, kept at `STATE_DIR/desired-state.pb`
//! (protobuf, mode 0600: it holds the secrets the host's components need).
//!
//! A state is accepted only if it is for this host and its generation is newer than the one held;
//! the same generation is accepted again only with the same content. An accepted state is written
//! (atomically) before anything acts on it, so after a restart the agent reconciles from it even
//! when the coordinator cannot be reached.
//!
//! A ledger that cannot be what the agent wrote — empty (protobuf decodes zero bytes as a valid,
//! empty state), undecodable, or for another host or generation 0 — is *unreadable*: the agent
//! holds no state then, so it neither stops nor archives anything; its components run on as they
//! are until the coordinator's state arrives and replaces the file.

use std::path::{Path, PathBuf};

use muster_proto::v1::DesiredState;
use prost::Message as _;

use crate::files::{self, FileError};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    File(#[from] FileError),
}

/// What the ledger made of an offered state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Newer: persisted, and now the one to act on.
    Accepted,
    /// The generation held, with the same content.
    Unchanged,
    /// Older than the one held.
    RefusedOlder { held: u64, offered: u64 },
    /// The generation held, with different content: the coordinator broke its own rule.
    RefusedConflict { generation: u64 },
    /// For another host.
    RefusedForeign { host_id: String },
}

#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    host_id: String,
    current: Option<DesiredState>,
    /// Why the file on disk was not used; `None` when it was, or there was none.
    unreadable: Option<String>,
}

impl Ledger {
    pub fn open(state_dir: &Path, host_id: &str) -> Result<Ledger, LedgerError> {
        let path = state_dir.join("desired-state.pb");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(FileError {
                    action: "read",
                    path,
                    source,
                }
                .into());
            }
        };
        let (current, unreadable) = match bytes.map(|bytes| held_state(&bytes, host_id)) {
            None => (None, None),
            Some(Ok(state)) => (Some(state), None),
            Some(Err(reason)) => {
                let reason = format!(
                    "the ledger {} is unreadable ({reason}); components are left as they are \
                     until the coordinator's state arrives",
                    path.display()
                );
                tracing::warn!(reason = %reason, "ledger unreadable");
                (None, Some(reason))
            }
        };
        Ok(Ledger {
            path,
            host_id: host_id.to_owned(),
            current,
            unreadable,
        })
    }

    /// Why the ledger on disk was not used, until a state from the coordinator replaces it.
    pub fn unreadable(&self) -> Option<&str> {
        self.unreadable.as_deref()
    }

    pub fn current(&self) -> Option<&DesiredState> {
        self.current.as_ref()
    }

    pub fn generation(&self) -> u64 {
        self.current.as_ref().map_or(0, |state| state.generation)
    }

    pub fn offer(&mut self, state: DesiredState) -> Result<Decision, LedgerError> {
        if state.host_id != self.host_id {
            return Ok(Decision::RefusedForeign {
                host_id: state.host_id,
            });
        }
        if let Some(held) = &self.current {
            if state.generation < held.generation {
                return Ok(Decision::RefusedOlder {
                    held: held.generation,
                    offered: state.generation,
                });
            }
            if state.generation == held.generation {
                return Ok(if &state == held {
                    Decision::Unchanged
                } else {
                    Decision::RefusedConflict {
                        generation: state.generation,
                    }
                });
            }
        }
        files::write_atomic(&self.path, &state.encode_to_vec(), 0o600)?;
        self.current = Some(state);
        self.unreadable = None;
        Ok(Decision::Accepted)
    }
}

/// The state in a ledger file's `bytes`, or why it cannot be one this agent wrote.
fn held_state(bytes: &[u8], host_id: &str) -> Result<DesiredState, String> {
    if bytes.is_empty() {
        return Err("the file is empty".to_owned());
    }
    let state =
        DesiredState::decode(bytes).map_err(|error| format!("not a desired state: {error}"))?;
    if state.host_id != host_id {
        return Err(format!(
            "it is for host {:?}, not this host {host_id:?}",
            state.host_id
        ));
    }
    if state.generation == 0 {
        return Err("it has no generation".to_owned());
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_proto::v1::Component;

    fn state(generation: u64, name: &str) -> DesiredState {
        DesiredState {
            host_id: "0123456789abcdef".into(),
            generation,
            components: vec![Component {
                name: name.into(),
                ..Default::default()
            }],
            bootstrap_tasks: Vec::new(),
        }
    }

    #[test]
    fn generations_only_grow_and_survive_a_restart() {
        let directory = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(directory.path(), "0123456789abcdef").unwrap();
        assert_eq!(ledger.offer(state(2, "a")).unwrap(), Decision::Accepted);
        assert_eq!(ledger.offer(state(2, "a")).unwrap(), Decision::Unchanged);
        assert_eq!(
            ledger.offer(state(2, "b")).unwrap(),
            Decision::RefusedConflict { generation: 2 }
        );
        assert_eq!(
            ledger.offer(state(1, "c")).unwrap(),
            Decision::RefusedOlder {
                held: 2,
                offered: 1
            }
        );
        let mut foreign = state(9, "x");
        foreign.host_id = "ffffffffffffffff".into();
        assert!(matches!(
            ledger.offer(foreign).unwrap(),
            Decision::RefusedForeign { .. }
        ));

        let reopened = Ledger::open(directory.path(), "0123456789abcdef").unwrap();
        assert_eq!(reopened.current(), Some(&state(2, "a")));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(directory.path().join("desired-state.pb"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// An empty, garbled or foreign ledger holds no state: nothing to act on (and so nothing to
    /// archive) until the coordinator's state arrives, which is then accepted and written.
    #[test]
    fn an_unreadable_ledger_holds_nothing_and_is_replaced() {
        let host = "0123456789abcdef";
        let mut foreign = state(3, "x");
        foreign.host_id = "ffffffffffffffff".into();
        for (contents, reason) in [
            (Vec::new(), "empty"),
            (b"\xff\xff\xff".to_vec(), "not a desired state"),
            (foreign.encode_to_vec(), "not this host"),
        ] {
            let directory = tempfile::tempdir().unwrap();
            let path = directory.path().join("desired-state.pb");
            std::fs::write(&path, &contents).unwrap();
            let mut ledger = Ledger::open(directory.path(), host).unwrap();
            assert_eq!(ledger.current(), None, "{reason}");
            let said = ledger.unreadable().unwrap();
            assert!(
                said.contains("desired-state.pb") && said.contains(reason),
                "{said}"
            );
            assert_eq!(ledger.offer(state(1, "a")).unwrap(), Decision::Accepted);
            assert_eq!(ledger.unreadable(), None);
            let reopened = Ledger::open(directory.path(), host).unwrap();
            assert_eq!(reopened.current(), Some(&state(1, "a")));
        }
    }
}
