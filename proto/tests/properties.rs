//! Property tests of every parser of untrusted input in `muster-proto`: names and addresses, join
//! and admin tokens, load-balancer settings and the HAProxy server line, and desired-state
//! decoding. Each runs proptest's default 256 cases in the suite; `PROPTEST_CASES=100000 cargo
//! nextest run -p muster-proto --test properties` is the longer run (see tests/README.md).

use muster_proto::token::{self, AdminToken, JoinToken};
use muster_proto::v1::{self, LoadBalancerSettings};
use muster_proto::{haproxy, validate};
use proptest::prelude::*;
use prost::Message as _;

/// Characters that would break out of a value in a config file or a log line.
fn dangerous(character: char) -> bool {
    character.is_whitespace() || character.is_control() || "\"'#;\\`$".contains(character)
}

/// Strings near the grammar: mostly name-like characters, with anything mixed in.
fn near_names() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._-]{0,80}",
        "[A-Za-z0-9._\\-/: \n#\"'\u{202e}]{0,40}",
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn an_accepted_name_is_safe_in_any_config_file(value in near_names()) {
        if validate::name("name", &value).is_ok() {
            prop_assert!(!value.is_empty() && value.len() <= 63, "{value:?}");
            prop_assert!(value.starts_with(|first: char| first.is_ascii_alphanumeric()));
            prop_assert!(!value.chars().any(dangerous), "{value:?}");
        }
    }

    #[test]
    fn an_accepted_host_is_an_address_or_dns_labels(value in near_names()) {
        if validate::host("address", &value).is_ok() {
            prop_assert!(!value.chars().any(dangerous), "{value:?}");
            prop_assert!(value.len() <= 253);
        }
        if let Ok(address) = validate::ip_address("advertise address", &value) {
            prop_assert_eq!(address.to_string().parse::<std::net::IpAddr>().unwrap(), address);
            prop_assert!(!address.is_unspecified());
        }
    }

    #[test]
    fn an_accepted_description_has_no_control_or_bidi_characters(value in any::<String>()) {
        if validate::description("description", &value).is_ok() {
            prop_assert!(!value.chars().any(char::is_control));
            let bidi = value.chars().any(|character| {
                ('\u{202a}'..='\u{202e}').contains(&character)
                    || ('\u{2066}'..='\u{2069}').contains(&character)
            });
            prop_assert!(!bidi, "{:?}", value);
        }
    }

    #[test]
    fn a_refusal_never_echoes_a_long_value(value in ".{200,10000}") {
        // At most the first 64 characters are shown, each at worst as a 10-character escape.
        let error = validate::name("name", &value).unwrap_err().to_string();
        prop_assert!(error.len() < 1024, "{} bytes", error.len());
    }

    #[test]
    fn tokens_parse_or_are_refused_without_panic(text in any::<String>()) {
        let _ = JoinToken::parse(&text);
        let _ = AdminToken::parse(&text);
        let _ = token::parse_join_credential(&text);
    }

    #[test]
    fn a_join_token_reads_back_as_written(
        ca_sha256 in "[0-9a-f]{64}",
        id in "[0-9a-f]{16}",
        secret in "[0-9a-f]{32}",
    ) {
        let written = JoinToken { ca_sha256, id, secret };
        let read = JoinToken::parse(&written.to_string()).unwrap();
        prop_assert_eq!(&read.ca_sha256, &written.ca_sha256);
        prop_assert_eq!(
            token::parse_join_credential(&read.credential()).unwrap(),
            (written.id.clone(), written.secret.clone())
        );
    }

    #[test]
    fn a_changed_token_character_is_refused_or_reads_differently(
        id in "[0-9a-f]{16}",
        secret in "[0-9a-f]{32}",
        position in 0usize..49,
        replacement in any::<char>(),
    ) {
        let text = format!("{id}.{secret}");
        let mut changed: Vec<char> = text.chars().collect();
        prop_assume!(changed[position] != replacement);
        changed[position] = replacement;
        let changed: String = changed.into_iter().collect();
        if let Ok(parsed) = token::parse_join_credential(&changed) {
            prop_assert_ne!(parsed, (id, secret));
        }
    }

    #[test]
    fn accepted_load_balancer_settings_render_one_line_per_server(
        haproxy_bin in near_names(),
        frontend_address in near_names(),
        check_inter_ms in any::<u32>(),
        check_rise in any::<u32>(),
        check_fall in any::<u32>(),
        connect_timeout_ms in any::<u32>(),
        retries in any::<u32>(),
        name in near_names(),
        address in near_names(),
        port in any::<u32>(),
    ) {
        let given = LoadBalancerSettings {
            haproxy_bin,
            frontend_address,
            check_inter_ms,
            check_rise,
            check_fall,
            connect_timeout_ms,
            server_timeout_ms: 0,
            retries,
        };
        let Ok(settings) = haproxy::settings(&given) else { return Ok(()) };
        prop_assert!(
            (100..=60_000).contains(&settings.connect_timeout_ms)
                && (1..=10).contains(&settings.retries),
            "{:?}",
            settings
        );
        prop_assume!(validate::name("server", &name).is_ok());
        prop_assume!(validate::host("address", &address).is_ok());
        let line = haproxy::server_line(&name, &address, port, &settings);
        prop_assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
        let start = format!("server {}{} ", haproxy::SERVER_PREFIX, name);
        prop_assert!(line.starts_with(&start), "{:?}", line);
        prop_assert_eq!(line.matches(" # ZATO ").count(), 1);
    }

    #[test]
    fn any_bytes_decode_as_a_desired_state_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(state) = v1::DesiredState::decode(bytes.as_slice()) {
            // What decodes encodes again, and reads back the same.
            let again = v1::DesiredState::decode(state.encode_to_vec().as_slice()).unwrap();
            prop_assert_eq!(again, state);
        }
    }
}
