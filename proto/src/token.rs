//! The textual forms of Muster's tokens.
//!
//! - A join token reads `MUSTER1-<ca-sha256>::<id>.<secret>` (after k3s): the SHA-256 of the
//!   coordinator's CA certificate (DER, 64 lowercase hex digits) lets the agent pin the CA before it
//!   sends the secret; the id names the token in lists and events; only a hash of the secret is kept.
//! - An admin token reads `muster-admin.<id>.<secret>`.
//!
//! Ids are 16 and secrets 32 lowercase hex digits. Parse errors never repeat the secret.

use std::fmt;

const JOIN_PREFIX: &str = "MUSTER1-";
const ADMIN_PREFIX: &str = "muster-admin.";
pub const ID_LEN: usize = 16;
pub const SECRET_LEN: usize = 32;
const CA_HASH_LEN: usize = 64;

/// A token that does not have its expected form. The message says what is wrong and never shows
/// the secret part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind}: {reason}")]
pub struct Malformed {
    pub kind: &'static str,
    pub reason: String,
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_sha256: String,
    pub id: String,
    pub secret: String,
}

impl JoinToken {
    /// The part the agent sends to the coordinator: `<id>.<secret>`.
    pub fn credential(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    pub fn parse(text: &str) -> Result<Self, Malformed> {
        let malformed = |reason: String| Malformed {
            kind: "join token",
            reason,
        };
        let rest = text
            .trim()
            .strip_prefix(JOIN_PREFIX)
            .ok_or_else(|| malformed(format!("it must start with '{JOIN_PREFIX}<ca-sha256>::'")))?;
        let (ca_sha256, credential) = rest
            .split_once("::")
            .ok_or_else(|| malformed("the '::' after the CA hash is missing".to_owned()))?;
        if ca_sha256.len() != CA_HASH_LEN || !is_lower_hex(ca_sha256) {
            return Err(malformed(format!(
                "the CA hash must be {CA_HASH_LEN} lowercase hex digits"
            )));
        }
        let (id, secret) = parse_credential(credential).map_err(malformed)?;
        Ok(JoinToken {
            ca_sha256: ca_sha256.to_owned(),
            id,
            secret,
        })
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{JOIN_PREFIX}{}::{}.{}",
            self.ca_sha256, self.id, self.secret
        )
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "JoinToken({})", self.id)
    }
}

/// Splits `<id>.<secret>` as the agent sends it in `EnrollRequest.token`.
pub fn parse_join_credential(text: &str) -> Result<(String, String), Malformed> {
    parse_credential(text).map_err(|reason| Malformed {
        kind: "join token",
        reason,
    })
}

/// A parsed admin token.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub id: String,
    pub secret: String,
}

impl AdminToken {
    pub fn parse(text: &str) -> Result<Self, Malformed> {
        let malformed = |reason: String| Malformed {
            kind: "admin token",
            reason,
        };
        let rest = text
            .trim()
            .strip_prefix(ADMIN_PREFIX)
            .ok_or_else(|| malformed(format!("it must start with '{ADMIN_PREFIX}'")))?;
        let (id, secret) = parse_credential(rest).map_err(malformed)?;
        Ok(AdminToken { id, secret })
    }
}

impl fmt::Display for AdminToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{ADMIN_PREFIX}{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "AdminToken({})", self.id)
    }
}

/// Whether `text` has the form of a token id (so it may be shown and looked up).
pub fn is_token_id(text: &str) -> bool {
    text.len() == ID_LEN && is_lower_hex(text)
}

fn parse_credential(text: &str) -> Result<(String, String), String> {
    let (id, secret) = text
        .split_once('.')
        .ok_or_else(|| "the '.' between id and secret is missing".to_owned())?;
    if !is_token_id(id) {
        return Err(format!("the id must be {ID_LEN} lowercase hex digits"));
    }
    if secret.len() != SECRET_LEN || !is_lower_hex(secret) {
        return Err(format!(
            "the secret must be {SECRET_LEN} lowercase hex digits"
        ));
    }
    Ok((id.to_owned(), secret.to_owned()))
}

fn is_lower_hex(text: &str) -> bool {
    text.chars()
        .all(|character| matches!(character, '0'..='9' | 'a'..='f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JoinToken {
        JoinToken {
            ca_sha256: "ab".repeat(32),
            id: "0123456789abcdef".into(),
            secret: "f".repeat(32),
        }
    }

    #[test]
    fn join_token_round_trips() {
        let token = sample();
        assert_eq!(JoinToken::parse(&token.to_string()).unwrap(), token);
        assert_eq!(
            token.credential(),
            format!("0123456789abcdef.{}", "f".repeat(32))
        );
    }

    #[test]
    fn malformed_join_tokens_say_why_without_the_secret() {
        let good = sample().to_string();
        let cases = [
            ("K10abc::x.y".to_owned(), "must start with"),
            (good.replace("::", ":"), "'::'"),
            (good.replacen("abab", "zz", 1), "CA hash"),
            (good.replace(".", "-"), "'.'"),
            (good.replace("0123456789abcdef", "short"), "the id"),
            (format!("{good}0"), "the secret"),
        ];
        for (text, expected) in cases {
            let error = JoinToken::parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains(&"f".repeat(32)), "{error}");
        }
    }

    #[test]
    fn admin_token_round_trips_and_debug_hides_the_secret() {
        let text = format!("muster-admin.0123456789abcdef.{}", "e".repeat(32));
        let token = AdminToken::parse(&text).unwrap();
        assert_eq!(token.to_string(), text);
        assert!(!format!("{token:?}").contains("eeee"));
        assert!(
            AdminToken::parse("Bearer xyz")
                .unwrap_err()
                .to_string()
                .contains("admin token")
        );
    }
}
