//! The words of a component's state, its condition and its backends' status, as people and
//! programs read them (`muster status`, `--output json`, the database's columns): the one place a
//! state becomes a word and a word a state.

impl crate::v1::ComponentState {
    /// The word people see (`muster status`, `--output json`, the database): "running", ...;
    /// empty for a component not yet looked at.
    pub fn word(self) -> &'static str {
        use crate::v1::ComponentState;
        match self {
            ComponentState::Unspecified => "",
            ComponentState::Creating => "creating",
            ComponentState::Waiting => "waiting",
            ComponentState::Starting => "starting",
            ComponentState::Running => "running",
            ComponentState::Unhealthy => "unhealthy",
            ComponentState::Restarting => "restarting",
            ComponentState::Stopped => "stopped",
            ComponentState::Failed => "failed",
        }
    }

    /// The state `word` names ([`Self::word`]); `None` for a word that names none.
    pub fn from_word(word: &str) -> Option<Self> {
        use crate::v1::ComponentState;
        [
            ComponentState::Unspecified,
            ComponentState::Creating,
            ComponentState::Waiting,
            ComponentState::Starting,
            ComponentState::Running,
            ComponentState::Unhealthy,
            ComponentState::Restarting,
            ComponentState::Stopped,
            ComponentState::Failed,
        ]
        .into_iter()
        .find(|state| state.word() == word)
    }
}

/// What a component is as shown to people and programs (`muster status`, `muster wait`, the admin
/// API's `state`): the state its host reported, or the coordinator's word for what the host
/// cannot say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Not reported yet (its host has not enrolled, not reported, or waits for the bootstrap).
    Pending,
    /// Its host stopped reporting.
    Down,
    /// Stopped because its host is drained.
    Drained,
    /// A server a healthy load balancer of its cluster takes out of rotation for failed checks.
    Unreachable,
    /// Its host is up but has not reported lately: what it last said may no longer hold (a host
    /// rebooting, an agent stopped, a coordinator that has just started on old reports).
    Unknown,
    /// What its host reported.
    Reported(crate::v1::ComponentState),
}

impl Condition {
    /// Its word: `pending`, `down`, `drained`, `unreachable`, `unknown`, or the reported state's.
    pub fn word(self) -> &'static str {
        match self {
            Condition::Pending => "pending",
            Condition::Down => "down",
            Condition::Drained => "drained",
            Condition::Unreachable => "unreachable",
            Condition::Unknown => "unknown",
            Condition::Reported(state) => state.word(),
        }
    }

    /// The condition `word` names ([`Self::word`]); `None` for a word that names none.
    pub fn from_word(word: &str) -> Option<Self> {
        [
            Condition::Pending,
            Condition::Down,
            Condition::Drained,
            Condition::Unreachable,
            Condition::Unknown,
        ]
        .into_iter()
        .find(|condition| condition.word() == word)
        .or_else(|| crate::v1::ComponentState::from_word(word).map(Condition::Reported))
    }
}

impl crate::v1::BackendStatus {
    /// A word for labels and programs: up, down, drain, maint, unchecked, or unknown.
    pub fn word(self) -> &'static str {
        use crate::v1::BackendStatus;
        match self {
            BackendStatus::Unspecified => "unknown",
            BackendStatus::Up => "up",
            BackendStatus::Down => "down",
            BackendStatus::Drain => "drain",
            BackendStatus::Maint => "maint",
            BackendStatus::Unchecked => "unchecked",
        }
    }

    /// What HAProxy's status column says: `UP`, `UP 1/2`, `DOWN`, `DOWN 1/2`, `DRAIN`, `MAINT`,
    /// `no check`, ... (`MAINT (via ...)` and the like count as their first word).
    pub fn from_haproxy(status: &str) -> Self {
        use crate::v1::BackendStatus;
        let first = status.split_whitespace().next().unwrap_or_default();
        match first {
            "UP" => BackendStatus::Up,
            "DOWN" | "NOLB" => BackendStatus::Down,
            "DRAIN" => BackendStatus::Drain,
            "MAINT" => BackendStatus::Maint,
            "no" if status.trim() == "no check" => BackendStatus::Unchecked,
            _ => BackendStatus::Unspecified,
        }
    }

    /// Whether a backend server's `check` (`BackendServerState::check`: HAProxy's check status,
    /// code and description) says its last health check passed. A server HAProxy has not checked
    /// yet (`INI`: it has just started) counts as UP there without being known to answer.
    pub fn check_passed(check: &str) -> bool {
        let status = check.trim_start_matches("* ").split_whitespace().next();
        matches!(status, Some("L4OK" | "L6OK" | "L7OK" | "L7OKC"))
    }

    /// HAProxy sends it new requests.
    pub fn in_rotation(self) -> bool {
        matches!(
            self,
            crate::v1::BackendStatus::Up | crate::v1::BackendStatus::Unchecked
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::BackendStatus;

    #[test]
    fn component_states_and_conditions_round_trip_through_their_words() {
        use crate::v1::ComponentState;
        for value in 0..=8 {
            let state = ComponentState::try_from(value).unwrap();
            assert_eq!(ComponentState::from_word(state.word()), Some(state));
            let condition = Condition::Reported(state);
            assert_eq!(Condition::from_word(condition.word()), Some(condition));
        }
        for condition in [
            Condition::Pending,
            Condition::Down,
            Condition::Drained,
            Condition::Unreachable,
            Condition::Unknown,
        ] {
            assert_eq!(Condition::from_word(condition.word()), Some(condition));
        }
        assert_eq!(Condition::from_word("sleeping"), None);
    }

    #[test]
    fn only_a_passed_check_counts_as_passed() {
        for (check, passed) in [
            ("L7OK 200", true),
            ("* L7OK 200", true),
            ("L4OK", true),
            ("INI", false),
            ("L4CON Connection refused", false),
            ("L7STS 503", false),
            ("", false),
        ] {
            assert_eq!(BackendStatus::check_passed(check), passed, "{check}");
        }
    }

    #[test]
    fn haproxys_status_column_is_understood() {
        for (text, status, in_rotation) in [
            ("UP", BackendStatus::Up, true),
            ("UP 1/2", BackendStatus::Up, true),
            ("DOWN", BackendStatus::Down, false),
            ("DOWN 1/2", BackendStatus::Down, false),
            ("NOLB", BackendStatus::Down, false),
            ("DRAIN", BackendStatus::Drain, false),
            ("MAINT", BackendStatus::Maint, false),
            ("MAINT (via bck/server1)", BackendStatus::Maint, false),
            ("no check", BackendStatus::Unchecked, true),
            ("", BackendStatus::Unspecified, false),
            ("UPPER", BackendStatus::Unspecified, false),
        ] {
            assert_eq!(BackendStatus::from_haproxy(text), status, "{text}");
            assert_eq!(status.in_rotation(), in_rotation, "{text}");
        }
    }
}
