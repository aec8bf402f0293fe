//! Property tests of what the coordinator takes from outside besides its RPCs (whose input checks
//! are muster-proto's, tested there): its config file and database URLs. Each runs proptest's
//! default 256 cases in the suite; `PROPTEST_CASES=100000 cargo nextest run -p muster-coordinator
//! --test properties` is the longer run (see tests/README.md).

use muster_coordinator::config::RawConfig;
use muster_coordinator::store::DatabaseUrl;
use proptest::prelude::*;

fn near_values() -> impl Strategy<Value = String> {
    prop_oneof![
        "(sqlite|postgres|mysql)://[a-z@:./0-9?=&%-]{0,40}",
        "[0-9.:]{0,25}",
        "[0-9]{1,4}(ms|s|m|h|d)",
        any::<String>(),
    ]
}

proptest! {
    /// Any file text: read as a config or refused with an error, never a panic.
    #[test]
    fn any_config_file_is_read_or_refused(text in any::<String>()) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("coordinator.toml");
        std::fs::write(&path, &text).unwrap();
        if let Ok(raw) = RawConfig::from_file(&path) {
            let _ = raw.validate("coordinator.toml");
        }
    }

    /// Any values: validated or refused; a database URL's password never appears in the error.
    #[test]
    fn any_config_values_are_validated_or_refused(
        database_url in proptest::option::of(near_values()),
        listen in proptest::option::of(near_values()),
        http_listen in proptest::option::of(near_values()),
        heartbeat_ttl in proptest::option::of(near_values()),
        host_certificate_ttl in proptest::option::of(near_values()),
        event_retention in proptest::option::of(near_values()),
        event_max in proptest::option::of(proptest::num::u64::ANY),
    ) {
        let raw = RawConfig {
            data_dir: Some("/var/lib/muster".into()),
            database_url,
            listen,
            http_listen,
            heartbeat_ttl,
            host_certificate_ttl,
            event_retention,
            event_max,
        };
        let _ = raw.validate("coordinator.toml");
    }

    /// A password in a database URL is never shown, in a refusal or in the redacted URL.
    #[test]
    fn a_database_url_never_shows_its_password(
        scheme in "(postgres|mysql|sqlite|http)",
        user in "[a-z]{1,8}",
        password in "[A-Za-z0-9]{12,20}",
        rest in "[a-z0-9@:./?=&%-]{0,30}",
    ) {
        let text = format!("{scheme}://{user}:{password}@{rest}");
        match DatabaseUrl::parse(&text) {
            Ok(url) => prop_assert!(!url.redacted().contains(&password), "{}", url.redacted()),
            Err(error) => prop_assert!(!error.to_string().contains(&password), "{}", error),
        }
    }
}
