//! The strict grammar every name and address must pass before Muster stores it or writes it into a
//! config file (HAProxy's, Zato's). A value with a space, a newline, a `#` or a quote can never pass,
//! so it can never inject configuration.

/// A value that does not fit its grammar. The Display names the field and shows the value escaped,
/// so a newline in it is visible rather than breaking the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

const NAME_MAX: usize = 63;

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
    )
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
}
