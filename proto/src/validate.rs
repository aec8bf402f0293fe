//! The strict grammar every name and address must pass before Muster stores it or writes it into a
//! config file (HAProxy's, Zato's). A value with a space, a newline, a `#` or a quote can never pass,
//! so it can never inject configuration.

/// A value that does not fit its grammar. The Display names the field and shows the value escaped,
/// so a newline in it is visible rather than breaking the message, and shortened: a long value is
/// not echoed back whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// How many characters of an offending value an error shows.
const SHOWN_MAX: usize = 64;

impl std::fmt::Display for Invalid {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let length = self.value.chars().count();
        if length <= SHOWN_MAX {
            return write!(
                formatter,
                "invalid {} {:?}: {}",
                self.field, self.value, self.reason
            );
        }
        let start: String = self.value.chars().take(SHOWN_MAX).collect();
        write!(
            formatter,
            "invalid {} {start:?}… ({length} characters): {}",
            self.field, self.reason
        )
    }
}

/// Unicode's bidirectional controls, which can make a text read otherwise than it is stored.
pub fn is_bidi_control(character: char) -> bool {
    matches!(
        character,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

const NAME_MAX: usize = 63;

/// Whether `value` is a Python identifier of ASCII letters, digits and `_`, not starting with a
/// digit, at most 100 characters: a module's, a package's or an enmasse env value's name.
pub fn python_identifier(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 100
        && !value.starts_with(|character: char| character.is_ascii_digit())
        && value
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_')
}

/// A cluster, host, server or component name: 1 to 63 of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit.
pub fn name(field: &'static str, value: &str) -> Result<(), Invalid> {
    let invalid = |reason| Invalid {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if value.len() > NAME_MAX {
        return Err(invalid("must be at most 63 characters"));
    }
    if !value.starts_with(|first: char| first.is_ascii_alphanumeric()) {
        return Err(invalid("must start with a letter or a digit"));
    }
    if !value
        .chars()
        .all(|character| character.is_ascii_alphanumeric() || "._-".contains(character))
    {
        return Err(invalid("may hold only letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

/// An address other hosts can reach a host at: an IPv4 or IPv6 address, not a name (an agent
/// resolves its advertised name before it sends it, so no other host has to resolve it), and not
/// 0.0.0.0, `::` or a multicast address.
pub fn ip_address(field: &'static str, value: &str) -> Result<std::net::IpAddr, Invalid> {
    let invalid = |reason| Invalid {
        field,
        value: value.to_owned(),
        reason,
    };
    let address = value
        .parse::<std::net::IpAddr>()
        .map_err(|_| invalid("must be an IP address"))?;
    if address.is_unspecified() || address.is_multicast() {
        return Err(invalid("not an address other hosts can reach"));
    }
    Ok(address)
}

/// A host name or IP address (no port): DNS labels of `A-Z a-z 0-9 -` joined by dots, an IPv4
/// address, or an IPv6 address.
pub fn host(field: &'static str, value: &str) -> Result<(), Invalid> {
    let invalid = |reason| Invalid {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if value.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if value.len() > 253 {
        return Err(invalid("must be at most 253 characters"));
    }
    for label in value.split('.') {
        let label_ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || character == '-');
        if !label_ok {
            return Err(invalid(
                "must be an IP address or a DNS name of letters, digits and '-'",
            ));
        }
    }
    Ok(())
}

/// Free text that is stored but never written into a config file (descriptions): at most 1024
/// characters and no control characters.
pub fn description(field: &'static str, value: &str) -> Result<(), Invalid> {
    let invalid = |reason| Invalid {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.chars().count() > 1024 {
        return Err(invalid("must be at most 1024 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("must not hold control characters such as newlines"));
    }
    if value.chars().any(is_bidi_control) {
        return Err(invalid(
            "must not hold bidirectional control characters (they make text read otherwise than it is)",
        ));
    }
    Ok(())
}

/// A database user, database name or schema for Zato's `--odb-*` options: 1 to 128 of
/// `A-Z a-z 0-9 . _ - /` (a slash for SQLite's file path), no spaces or quotes.
pub fn odb_identifier(field: &'static str, value: &str) -> Result<(), Invalid> {
    restricted(
        field,
        value,
        (128, "must be at most 128 characters"),
        (
            "._-/",
            "may hold only letters, digits, '.', '_', '-' and '/'",
        ),
    )?;
    let invalid = |reason| Invalid {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.starts_with('-') {
        return Err(invalid(
            "must not start with '-' (a command line would take it for an option)",
        ));
    }
    if value.split('/').any(|component| component == "..") {
        return Err(invalid("must not hold a '..' component"));
    }
    Ok(())
}

/// 1 to `max.0` characters, each a letter, a digit or one of `allowed.0`; the second member of
/// each pair is the reason given when the value breaks that rule.
fn restricted(
    field: &'static str,
    value: &str,
    max: (usize, &'static str),
    allowed: (&str, &'static str),
) -> Result<(), Invalid> {
    let invalid = |reason| Invalid {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if value.len() > max.0 {
        return Err(invalid(max.1));
    }
    if !value
        .chars()
        .all(|character| character.is_ascii_alphanumeric() || allowed.0.contains(character))
    {
        return Err(invalid(allowed.1));
    }
    Ok(())
}

/// A program to run: an absolute path, or a name looked up in `PATH`; 1 to 255 of
/// `A-Z a-z 0-9 . _ - + /`, no spaces, no `..` component.
pub fn program(field: &'static str, value: &str) -> Result<(), Invalid> {
    restricted(
        field,
        value,
        (255, "must be at most 255 characters"),
        (
            "._-+/",
            "may hold only letters, digits, '.', '_', '-', '+' and '/'",
        ),
    )?;
    let invalid = |reason| Invalid {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.contains('/') && !value.starts_with('/') {
        return Err(invalid("must be an absolute path or a bare program name"));
    }
    if value.split('/').any(|part| part == "..") {
        return Err(invalid("must not hold '..'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_inject_config_are_refused() {
        for bad in [
            "",
            "a b",
            "a\nb",
            "a#b",
            "-a",
            "a\"b",
            "a;b",
            &"x".repeat(64),
        ] {
            let error = name("cluster name", bad).unwrap_err();
            assert_eq!(error.value, bad);
            assert!(
                error.to_string().starts_with("invalid cluster name"),
                "{error}"
            );
        }
        for good in ["prod", "prod-1", "a.b_c", "0", &"x".repeat(63)] {
            name("cluster name", good).unwrap();
        }
    }

    #[test]
    fn a_newline_is_shown_escaped() {
        let error = name("cluster name", "de\nmo").unwrap_err().to_string();
        assert!(error.contains(r#""de\nmo""#), "{error}");
        assert!(!error.contains('\n'));
    }

    #[test]
    fn hosts() {
        for good in ["10.0.0.1", "::1", "app-3.example.com", "localhost"] {
            host("address", good).unwrap();
        }
        for bad in ["", "a b", "a_b", "-a.com", "a..b", "1.2.3.4:80", "a\n"] {
            host("address", bad).unwrap_err();
        }
    }

    #[test]
    fn advertised_addresses() {
        for good in ["10.0.0.1", "127.0.0.1", "fd00::5"] {
            ip_address("advertise address", good).unwrap();
        }
        for bad in ["app-1", "0.0.0.0", "::", "224.0.0.1", "10.0.0.1:80", ""] {
            assert!(ip_address("advertise address", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn programs() {
        for good in [
            "haproxy",
            "/usr/sbin/haproxy",
            "/opt/haproxy-2.8/bin/haproxy",
        ] {
            program("haproxy binary", good).unwrap();
        }
        for bad in [
            "",
            "bin/haproxy",
            "/usr/sbin/../bin/sh",
            "haproxy -d",
            "/a\nb",
            "a;b",
        ] {
            program("haproxy binary", bad).unwrap_err();
        }
    }

    #[test]
    fn descriptions() {
        description("description", "Production, eu-west").unwrap();
        description("description", "two\nlines").unwrap_err();
        description("description", &"x".repeat(1025)).unwrap_err();
    }

    #[test]
    fn odb_identifiers_refuse_options_and_parent_directories() {
        assert!(odb_identifier("--odb-user", "zato").is_ok());
        assert!(odb_identifier("--odb-db-name", "/var/lib/zato/odb.db").is_ok());
        for bad in ["-zato", "--help", "/var/lib/../../etc/odb.db", "../odb.db"] {
            assert!(odb_identifier("--odb-user", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn descriptions_refuse_bidi_controls_and_long_values_are_not_echoed() {
        assert!(description("description", "orders, EU").is_ok());
        let error = description("description", "pay \u{202E}rof").unwrap_err();
        assert!(error.to_string().contains("bidirectional"), "{error}");
        let long = "x".repeat(10_000);
        let shown = name("cluster name", &long).unwrap_err().to_string();
        assert!(shown.len() < 300, "{shown}");
        assert!(shown.contains("(10000 characters)"), "{shown}");
    }
}
