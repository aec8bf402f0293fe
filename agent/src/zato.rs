//! The `zato` command, as the agent runs it: the options `shared/ZATO.md` lists, as the configured
//! user, in the components directory. Zato takes secrets only as command-line options, so they go
//! there and nowhere else: every command is logged with secret values as `***`, and any secret that
//! shows up in Zato's output is replaced by `***` before the output is reported.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use muster_proto::v1::{OdbSettings, OdbType};

/// How long one `zato` command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// One command-line argument; a secret is shown as `***` wherever the command is shown.
#[derive(Clone)]
pub enum Arg {
    Plain(String),
    Secret(String),
}

impl Arg {
    pub fn plain(text: impl Into<String>) -> Arg {
        Arg::Plain(text.into())
    }
}

/// An option and its value.
pub fn option(name: &str, value: impl Into<String>) -> [Arg; 2] {
    [Arg::plain(name), Arg::Plain(value.into())]
}

pub fn secret_option(name: &str, value: &str) -> [Arg; 2] {
    [Arg::plain(name), Arg::Secret(value.to_owned())]
}

#[derive(Debug, thiserror::Error)]
pub enum ZatoError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        command: String,
        status: String,
        output: String,
    },
    #[error("unknown user {0:?} in run_as")]
    UnknownUser(String),
}

/// The user Zato commands run as.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// Makes this user the owner of `path`.
    pub fn give(&self, path: &Path) -> Result<(), String> {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(self.uid)),
            Some(nix::unistd::Gid::from_raw(self.gid)),
        )
        .map_err(|error| format!("cannot give {} to {}: {error}", path.display(), self.name))
    }

    pub fn lookup(name: &str) -> Result<RunAs, ZatoError> {
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| ZatoError::UnknownUser(name.to_owned()))?;
        Ok(RunAs {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Zato {
    pub bin: PathBuf,
    pub run_as: Option<RunAs>,
}

impl Zato {
    fn shown(&self, args: &[Arg]) -> String {
        let mut shown = vec![self.bin.display().to_string()];
        shown.extend(args.iter().map(|arg| match arg {
            Arg::Plain(text) => text.clone(),
            Arg::Secret(_) => "***".to_owned(),
        }));
        shown.join(" ")
    }

    /// Runs `zato ARGS` in `directory`; `on_spawn` gets the child's pid (to mark work in
    /// progress). Returns the (scrubbed) output on success.
    pub async fn run(
        &self,
        args: &[Arg],
        directory: &Path,
        on_spawn: impl FnOnce(u32),
    ) -> Result<String, ZatoError> {
        let command_text = self.shown(args);
        tracing::info!(command = %command_text, directory = %directory.display(), "running zato");
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .args(args.iter().map(|arg| match arg {
                Arg::Plain(text) | Arg::Secret(text) => text.as_str(),
            }))
            .current_dir(directory)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        if let Some(user) = &self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        let child = command.spawn().map_err(|source| ZatoError::Spawn {
            command: command_text.clone(),
            source,
        })?;
        if let Some(pid) = child.id() {
            on_spawn(pid);
        }
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| ZatoError::Timeout {
                command: command_text.clone(),
                timeout: COMMAND_TIMEOUT,
            })?
            .map_err(|source| ZatoError::Spawn {
                command: command_text.clone(),
                source,
            })?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let text = scrub(text.trim(), args);
        if output.status.success() {
            Ok(text)
        } else {
            Err(ZatoError::Failed {
                command: command_text,
                status: output.status.to_string(),
                output: text,
            })
        }
    }
}

/// `text` with every secret among `args` replaced by `***`.
pub fn scrub(text: &str, args: &[Arg]) -> String {
    let mut scrubbed = text.to_owned();
    for arg in args {
        if let Arg::Secret(secret) = arg
            && !secret.is_empty()
        {
            scrubbed = scrubbed.replace(secret.as_str(), "***");
        }
    }
    scrubbed
}

/// Zato's `--odb-*` options for a cluster's ODB. An SQLite ODB without a file name gets
/// `DEFAULT_SQLITE`.
pub fn odb_options(odb: &OdbSettings, password: &str, default_sqlite: &Path) -> Vec<Arg> {
    let odb_type = OdbType::try_from(odb.odb_type).unwrap_or(OdbType::Sqlite);
    let mut args = Vec::new();
    match odb_type {
        OdbType::Sqlite | OdbType::Unspecified => {
            args.extend(option("--odb-type", "sqlite"));
            let file = if odb.db_name.is_empty() {
                default_sqlite.display().to_string()
            } else {
                odb.db_name.clone()
            };
            args.extend(option("--odb-db-name", file));
        }
        OdbType::Postgresql | OdbType::Mysql => {
            args.extend(option("--odb-type", odb_type.zato_name()));
            args.extend(option("--odb-host", odb.host.clone()));
            args.extend(option("--odb-port", odb.port.to_string()));
            args.extend(option("--odb-user", odb.user.clone()));
            args.extend(option("--odb-db-name", odb.db_name.clone()));
            args.extend(secret_option("--odb-password", password));
            if !odb.postgresql_schema.is_empty() {
                args.extend(option("--postgresql-schema", odb.postgresql_schema.clone()));
            }
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_scrubbed() {
        let zato = Zato {
            bin: "zato".into(),
            run_as: None,
        };
        let mut args = vec![Arg::plain("create"), Arg::plain("odb")];
        args.extend(secret_option("--odb-password", "hunter2"));
        assert_eq!(zato.shown(&args), "zato create odb --odb-password ***");
        assert_eq!(scrub("login hunter2 failed", &args), "login *** failed");
    }

    #[test]
    fn odb_options_follow_the_odb_type() {
        let sqlite = OdbSettings {
            odb_type: OdbType::Sqlite as i32,
            ..Default::default()
        };
        let shown: Vec<String> = odb_options(&sqlite, "", Path::new("/opt/zato/prod/odb.db"))
            .into_iter()
            .map(|arg| match arg {
                Arg::Plain(text) | Arg::Secret(text) => text,
            })
            .collect();
        assert_eq!(
            shown,
            [
                "--odb-type",
                "sqlite",
                "--odb-db-name",
                "/opt/zato/prod/odb.db"
            ]
        );
        let postgres = OdbSettings {
            odb_type: OdbType::Postgresql as i32,
            host: "db".into(),
            port: 5432,
            user: "zato".into(),
            db_name: "odb".into(),
            postgresql_schema: String::new(),
        };
        let args = odb_options(&postgres, "pw", Path::new("/unused"));
        assert!(matches!(&args[11], Arg::Secret(secret) if secret == "pw"));
    }
}
