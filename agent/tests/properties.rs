//! Property tests of what the agent takes from outside: its config file, the ledger file it reads
//! at start, and the load-balancer component of a desired state, which becomes an HAProxy config.
//! Each runs proptest's default 256 cases in the suite; `PROPTEST_CASES=100000 cargo nextest run
//! -p muster-agent --test properties` is the longer run (see tests/README.md).

use std::path::Path;

use muster_agent::config::RawConfig;
use muster_agent::haproxy::{Paths, Plan};
use muster_agent::ledger::Ledger;
use muster_proto::v1::{self, BackendServer, Component, LoadBalancerSettings, Role};
use proptest::prelude::*;
use prost::Message as _;

/// Strings near the grammar: mostly name-like characters, with anything mixed in.
fn near_names() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{1,20}",
        "[A-Za-z0-9._\\-/: \n#\"'{}\u{202e}]{0,30}",
        any::<String>(),
    ]
}

/// Mostly what `valid` makes, sometimes anything: so that many cases pass the checks and reach the
/// renderer, and the rest try to get past them.
fn mostly(valid: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![8 => valid, 1 => near_names()]
}

fn port() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 1u32..65536, 1 => any::<u32>()]
}

fn backend() -> impl Strategy<Value = BackendServer> {
    (
        mostly("[a-z][a-z0-9-]{0,15}"),
        mostly("10\\.[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}|[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5})?"),
        port(),
        any::<bool>(),
    )
        .prop_map(|(name, address, port, drain)| BackendServer {
            name,
            address,
            port,
            drain,
        })
}

fn load_balancer() -> impl Strategy<Value = Component> {
    (
        mostly("[a-z][a-z0-9-]{0,15}"),
        mostly("[a-z][a-z0-9-]{0,15}"),
        port(),
        mostly("|0\\.0\\.0\\.0|127\\.0\\.0\\.1|::"),
        proptest::collection::vec(backend(), 0..5),
    )
        .prop_map(
            |(cluster, name, port, frontend_address, backends)| Component {
                role: Role::LoadBalancer as i32,
                cluster,
                name,
                port,
                load_balancer: Some(LoadBalancerSettings {
                    frontend_address,
                    ..Default::default()
                }),
                backends,
                ..Default::default()
            },
        )
}

fn raw_config() -> impl Strategy<Value = RawConfig> {
    (
        proptest::option::of(near_names()),
        proptest::option::of(near_names()),
        proptest::option::of(near_names()),
        proptest::option::of(near_names()),
        proptest::option::of(proptest::collection::vec(near_names(), 0..3)),
        proptest::option::of(near_names()),
        proptest::option::of(near_names()),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(
            |(
                coordinator,
                host_name,
                advertise_address,
                bind_address,
                roles,
                run_as,
                heartbeat,
                ipc,
            )| {
                RawConfig {
                    coordinator: coordinator.map(|host| format!("https://{host}")),
                    host_name,
                    advertise_address,
                    bind_address,
                    roles,
                    run_as,
                    heartbeat_interval: heartbeat,
                    zato_ipc_port_start: ipc,
                    ..Default::default()
                }
            },
        )
}

proptest! {
    /// What passes the checks renders as exactly one `server` line per backend server: no value
    /// adds a line, a section or a directive to HAProxy's config.
    #[test]
    fn a_checked_load_balancer_renders_one_line_per_server(component in load_balancer()) {
        let Ok(plan) = Plan::from_component(&component) else { return Ok(()) };
        let paths = Paths::new(Path::new("/run/muster/lb"));
        let text = plan.render(&paths);
        let mut bare = plan.clone();
        bare.servers.clear();
        let bare_text = bare.render(&paths);
        prop_assert_eq!(
            text.lines().count(),
            bare_text.lines().count() + plan.servers.len()
        );
        let server_lines = text
            .lines()
            .filter(|line| line.trim_start().starts_with("server "))
            .count();
        prop_assert_eq!(server_lines, plan.servers.len());
        for server in &plan.servers {
            prop_assert!(!server.name.contains(char::is_whitespace));
            prop_assert!(!server.address.contains(char::is_whitespace));
        }
    }

    /// Any file text: read as a config or refused with an error, never a panic.
    #[test]
    fn any_config_file_is_read_or_refused(text in any::<String>()) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("agent.toml");
        std::fs::write(&path, &text).unwrap();
        if let Ok(raw) = RawConfig::from_file(&path) {
            let _ = raw.validate("agent.toml");
        }
    }

    /// Any values: validated or refused by name; what is accepted obeys the grammar.
    #[test]
    fn a_validated_config_holds_only_checked_values(raw in raw_config()) {
        let Ok(config) = raw.validate("agent.toml") else { return Ok(()) };
        prop_assert!(muster_proto::validate::name("host", &config.host_name).is_ok());
        prop_assert!(muster_proto::validate::host("address", &config.advertise_address).is_ok());
        prop_assert!(config.coordinator.starts_with("https://"));
        if let Some(user) = &config.run_as {
            prop_assert!(muster_proto::validate::name("user", user).is_ok());
        }
    }

    /// Any bytes in the ledger file: a state of this host, or a ledger that says it is unreadable;
    /// never a panic, never another host's state.
    #[test]
    fn any_ledger_bytes_are_a_state_or_unreadable(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("desired-state.pb"), &bytes).unwrap();
        let ledger = Ledger::open(directory.path(), "host-a").unwrap();
        match ledger.current() {
            Some(state) => prop_assert_eq!(&state.host_id, "host-a"),
            None => prop_assert!(ledger.unreadable().is_some()),
        }
    }

    /// A real state of this host, with any bytes after it, is never taken for another's.
    #[test]
    fn a_ledger_with_a_foreign_state_is_unreadable(generation in any::<u64>()) {
        let directory = tempfile::tempdir().unwrap();
        let state = v1::DesiredState { host_id: "host-b".into(), generation, ..Default::default() };
        std::fs::write(directory.path().join("desired-state.pb"), state.encode_to_vec()).unwrap();
        let ledger = Ledger::open(directory.path(), "host-a").unwrap();
        prop_assert!(ledger.current().is_none());
        prop_assert!(ledger.unreadable().is_some());
    }
}
