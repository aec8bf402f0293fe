//! Database URLs: parsed, checked, and shown without their password.

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

/// A checked database URL. Display and [`DatabaseUrl::redacted`] never show its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    pub(super) dialect: Dialect,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "DatabaseUrl({})", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.redacted())
    }
}

impl DatabaseUrl {
    /// Checks `text` as a database URL: `sqlite://PATH`, `postgres://USER@HOST[:PORT]/DB` or
    /// `mysql://USER@HOST[:PORT]/DB` (`postgresql://` and `mariadb://` are accepted too).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: redact(text),
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(text).map_err(|error| {
            invalid(&format!(
                "not a URL ({error}); expected sqlite://PATH, postgres://USER@HOST/DB or mysql://USER@HOST/DB"
            ))
        })?;
        let dialect = match parsed.scheme() {
            "sqlite" => Dialect::Sqlite,
            "postgres" | "postgresql" => Dialect::Postgres,
            "mysql" | "mariadb" => Dialect::MySql,
            _ => {
                return Err(invalid(
                    "unknown scheme; expected sqlite://PATH, postgres://USER@HOST/DB or mysql://USER@HOST/DB",
                ));
            }
        };
        let mut url = text.to_owned();
        match dialect {
            Dialect::Sqlite => {
                let path = text.trim_start_matches("sqlite:").trim_start_matches("//");
                if path.is_empty() || path.starts_with('?') {
                    return Err(invalid("the database file's path is missing"));
                }
                if !text.contains("mode=") {
                    let separator = if text.contains('?') { '&' } else { '?' };
                    url = format!("{text}{separator}mode=rwc");
                }
            }
            Dialect::Postgres | Dialect::MySql => {
                if parsed.host_str().unwrap_or_default().is_empty() {
                    return Err(invalid("the host is missing"));
                }
                if parsed.path().trim_start_matches('/').is_empty() {
                    return Err(invalid(
                        "the database name is missing (for example /muster)",
                    ));
                }
                if parsed.scheme() == "mariadb" {
                    url = format!("mysql{}", &text["mariadb".len()..]);
                }
            }
        }
        Ok(DatabaseUrl { url, dialect })
    }

    /// An SQLite URL's database file; `None` for PostgreSQL and MySQL.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        if self.dialect != Dialect::Sqlite {
            return None;
        }
        let path = self
            .url
            .trim_start_matches("sqlite:")
            .trim_start_matches("//");
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        Some(std::path::PathBuf::from(path))
    }

    /// The same database, never created: an SQLite file that is missing is an error (only `init`
    /// creates a database).
    pub fn existing_only(&self) -> DatabaseUrl {
        DatabaseUrl {
            url: self.url.replace("mode=rwc", "mode=rw"),
            dialect: self.dialect,
        }
    }

    /// The embedded default: a SQLite file, created when missing.
    pub fn sqlite_file(path: &std::path::Path) -> Self {
        DatabaseUrl {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            dialect: Dialect::Sqlite,
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL as it can be shown: any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }

    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.url
    }
}

fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => text.to_owned(),
        // Without a parse, credentials cannot be told apart; show the value only when it has none.
        Err(_) if !text.contains('@') => text.escape_debug().to_string(),
        Err(_) => "<not shown: it may hold a password>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_checked_and_redacted() {
        let url = DatabaseUrl::parse("postgres://muster:s3cret@db.example:5432/muster").unwrap();
        assert_eq!(url.dialect(), Dialect::Postgres);
        assert!(!url.to_string().contains("s3cret"));
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            DatabaseUrl::parse("mariadb://root@h/db").unwrap().expose(),
            "mysql://root@h/db"
        );
        assert!(
            DatabaseUrl::parse("sqlite:///tmp/x.db")
                .unwrap()
                .expose()
                .ends_with("?mode=rwc")
        );
        for (bad, expected) in [
            ("not a url", "not a URL"),
            ("redis://h/db", "unknown scheme"),
            ("postgres://u:pw@h", "database name is missing"),
            ("sqlite://", "path is missing"),
        ] {
            let error = DatabaseUrl::parse(bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{bad}: {error}");
            assert!(!error.contains(":pw@"), "{error}");
        }
    }
}
