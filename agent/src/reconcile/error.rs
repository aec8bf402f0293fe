//! Why a step of a component's life failed. Its words are what the host reports as the
//! component's error (`muster status` shows them); its kind decides how soon the step is tried
//! again: a `zato` command or Zato's ODB with the slower backoff of Zato's steps (each command
//! is a Python process of seconds of CPU), anything else with the reconciler's.

use std::path::Path;
use std::time::Duration;

use crate::files::{FileError, file_error};
use crate::haproxy::HaProxyError;
use crate::zato::ZatoError;
use crate::zato::conf::ConfError;
use crate::zato::odb::OdbError;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A `zato` command failed, or could not run.
    #[error(transparent)]
    Zato(#[from] ZatoError),
    /// Zato's ODB could not be read or changed, or holds what a step cannot go on with.
    #[error(transparent)]
    Odb(#[from] OdbError),
    /// A create that cannot finish as it must: what `zato create` left is not what it must be,
    /// or a row in Zato's ODB is in its way.
    #[error("{0}")]
    Create(String),
    /// HAProxy could not be brought to its plan (a load balancer's steps).
    #[error(transparent)]
    HaProxy(#[from] HaProxyError),
    /// The component's process ended right after it was started, before it was ever seen alive
    /// (a start that failed while its command said nothing).
    #[error("{0}")]
    EndedAtStart(String),
    /// A config file Zato wrote could not be read or changed.
    #[error(transparent)]
    Conf(#[from] ConfError),
    /// A file or directory of the component could not be made, changed, moved or removed.
    #[error("{file}: {}", file.source)]
    File {
        #[from]
        file: FileError,
    },
    /// What the desired state asks, refused by validation or by this host's own config: it stays
    /// refused until one of them changes.
    #[error("refused: {0}")]
    Refused(String),
    /// Anything else, in words: pip, a process that does not end, an admin service's answer.
    #[error("{0}")]
    Other(String),
}

impl StepError {
    /// A failed file operation: `action` says what was done to `path` ("create", "move").
    pub fn file(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StepError {
        let error = file_error(action, path);
        move |source| StepError::from(error(source))
    }

    /// The delay before the `attempt`-th try in a row after this failure.
    pub fn retry_after(&self, attempt: u32) -> Duration {
        match self {
            StepError::Zato(_)
            | StepError::Odb(_)
            | StepError::Create(_)
            | StepError::EndedAtStart(_) => super::step_backoff(attempt),
            _ => super::backoff(attempt),
        }
    }
}

impl From<muster_proto::validate::Invalid> for StepError {
    fn from(invalid: muster_proto::validate::Invalid) -> StepError {
        StepError::Refused(invalid.to_string())
    }
}

impl From<String> for StepError {
    fn from(words: String) -> StepError {
        StepError::Other(words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_failure_says_what_where_and_why_and_is_retried_sooner_than_a_zato_command() {
        let missing = Path::new("/nonexistent/prod/server-server1");
        let error = std::fs::rename(missing, "/nonexistent/elsewhere")
            .map_err(StepError::file("move", missing))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot move /nonexistent/prod/server-server1: No such file or directory (os error 2)"
        );
        let zato = StepError::Zato(ZatoError::Timeout {
            command: "zato create server".to_owned(),
            timeout: Duration::from_secs(600),
        });
        for attempt in 1..=5 {
            assert!(
                error.retry_after(attempt) < zato.retry_after(attempt),
                "attempt {attempt}"
            );
            assert!(zato.retry_after(attempt) >= super::super::STEP_BACKOFF_FLOOR / 2);
        }
    }

    #[test]
    fn a_refusal_says_so() {
        let invalid = muster_proto::validate::name("component name", "../etc").unwrap_err();
        let error = StepError::from(invalid);
        assert!(error.to_string().starts_with("refused: "), "{error}");
    }
}
