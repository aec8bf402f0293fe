//! The ledger: the last desired state this host accepted, kept at `STATE_DIR/desired-state.pb`
//! (protobuf, mode 0600: it holds the secrets the host's components need).
//!
//! A state is accepted only if it is for this host and its generation is newer than the one held;
//! the same generation is accepted again only with the same content. An accepted state is written
//! (atomically) before anything acts on it, so after a restart the agent reconciles from it even
//! when the coordinator cannot be reached.

use std::path::{Path, PathBuf};

use muster_proto::v1::DesiredState;
use prost::Message as _;

use crate::files::{self, FileError};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("the ledger {0} is corrupt; remove it to start from the coordinator's state")]
    Corrupt(PathBuf),
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
}

impl Ledger {
    pub fn open(state_dir: &Path, host_id: &str) -> Result<Ledger, LedgerError> {
        let path = state_dir.join("desired-state.pb");
        let current = match std::fs::read(&path) {
            Ok(bytes) => Some(
                DesiredState::decode(bytes.as_slice())
                    .map_err(|_| LedgerError::Corrupt(path.clone()))?,
            ),
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
        Ok(Ledger {
            path,
            host_id: host_id.to_owned(),
            current,
        })
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
        Ok(Decision::Accepted)
    }
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

    #[test]
    fn a_corrupt_ledger_is_named() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("desired-state.pb"), b"\xff\xff\xff").unwrap();
        let error = Ledger::open(directory.path(), "x").unwrap_err().to_string();
        assert!(
            error.contains("desired-state.pb") && error.contains("corrupt"),
            "{error}"
        );
    }
}
