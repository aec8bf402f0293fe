//! The `zato` command, as the agent runs it, and what the agent knows of Zato 3.2 (read from its
//! source and checked against the real thing; `packaging/docs/zato.md` lists it):
//! - [`bytecode`]: whether Zato's own code has its Python bytecode (each command is slower
//!   without);
//! - [`command`]: the argument lists of `zato create|start|stop|update password`;
//! - [`conf`]: the files Zato writes that the agent edits afterwards (`server.conf`,
//!   `scheduler.conf`, `web-admin.conf`) and the symlink a create leaves behind;
//! - [`process`]: finding the process that runs a component, before and after its pidfile exists;
//! - [`health`]: the probes that say a component works;
//! - [`jobs`]: the scheduler's heartbeat job and the log of its job runs;
//! - [`odb`]: the one ODB row the agent removes itself (a stale `server` row), and what Zato
//!   recorded as deployed on a server;
//! - [`services`]: deploying a cluster's Python modules through a server's admin channel.
//!
//! Zato takes secrets only as command-line options (or, for a few, environment variables), so they
//! go there and nowhere else: every command is logged with secret values as `***`, and any secret
//! that shows up in Zato's output is replaced by `***` before the output is reported. Every option
//! is one argument `--name=value`, since argparse takes a separate value that starts with `-` for an
//! option, and every command puts its options before its positional arguments, since Zato takes a
//! command word (`quickstart`, ...) among the positional arguments before the first option as a
//! command of its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub mod bytecode;
pub mod command;
pub mod conf;
pub mod health;
pub mod jobs;
pub mod odb;
pub mod process;
pub mod services;

/// How long one `zato` command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// Zato's exit status when `create server` finds a server of that name in the cluster
/// (SERVER_NAME_ALREADY_EXISTS).
pub const EXIT_SERVER_NAME_ALREADY_EXISTS: i32 = 7;

/// One command-line argument; a secret option is shown as `--name=***` wherever the command is
/// shown.
#[derive(Clone)]
pub enum Arg {
    Plain(String),
    Secret {
        option: &'static str,
        value: String,
    },
    /// An environment variable of the command (not secret: shown as it is).
    Env {
        name: String,
        value: String,
    },
    /// An environment variable of the command, not an argument: the way to give Zato a secret
    /// that it also reads from its environment, out of `/proc/PID/cmdline`.
    SecretEnv {
        name: &'static str,
        value: String,
    },
}

impl Arg {
    pub fn plain(text: impl Into<String>) -> Arg {
        Arg::Plain(text.into())
    }

    /// What the command gets as an argument; `None` for an environment variable.
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Arg::Plain(text) => Some(text.clone()),
            Arg::Secret { option, value } => Some(format!("{option}={value}")),
            Arg::Env { .. } | Arg::SecretEnv { .. } => None,
        }
    }

    /// What logs and errors show.
    fn shown(&self) -> String {
        match self {
            Arg::Plain(text) => text.clone(),
            Arg::Secret { option, .. } => format!("{option}=***"),
            Arg::Env { name, value } => format!("{name}={value}"),
            Arg::SecretEnv { name, .. } => format!("{name}=***"),
        }
    }

    fn secret(&self) -> Option<&str> {
        match self {
            Arg::Plain(_) | Arg::Env { .. } => None,
            Arg::Secret { value, .. } | Arg::SecretEnv { value, .. } => Some(value),
        }
    }
}

/// An option and its value, as one argument.
pub fn option(name: &str, value: impl std::fmt::Display) -> Arg {
    Arg::Plain(format!("{name}={value}"))
}

/// An environment variable of a `zato` command.
pub fn env(name: impl Into<String>, value: impl std::fmt::Display) -> Arg {
    Arg::Env {
        name: name.into(),
        value: value.to_string(),
    }
}

/// A secret Zato reads from its environment, given there rather than on the command line.
pub fn secret_env(name: &'static str, value: &str) -> Arg {
    Arg::SecretEnv {
        name,
        value: value.to_owned(),
    }
}

pub fn secret_option(name: &'static str, value: &str) -> Arg {
    Arg::Secret {
        option: name,
        value: value.to_owned(),
    }
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
        /// Zato's exit status; `None` when a signal ended it.
        code: Option<i32>,
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

impl ZatoError {
    /// Whether Zato exited with `code`.
    pub fn exited_with(&self, code: i32) -> bool {
        matches!(self, ZatoError::Failed { code: Some(actual), .. } if *actual == code)
    }
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

    /// Says why this user cannot run `program`, from the permission bits of the program and of
    /// every directory above it.
    pub fn check_can_execute(&self, program: &Path) -> Result<(), String> {
        let name = std::ffi::CString::new(self.name.clone())
            .map_err(|_| format!("invalid user name {:?}", self.name))?;
        let groups: Vec<u32> =
            nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(self.gid))
                .map(|groups| groups.into_iter().map(|gid| gid.as_raw()).collect())
                .unwrap_or_else(|_| vec![self.gid]);
        let allowed = |path: &Path, bit: u32| -> Result<bool, String> {
            let metadata =
                std::fs::metadata(path).map_err(|error| format!("{}: {error}", path.display()))?;
            let mode = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions());
            let owner = std::os::unix::fs::MetadataExt::uid(&metadata);
            let group = std::os::unix::fs::MetadataExt::gid(&metadata);
            // Every one of `bit`'s permissions, from the class the user falls in.
            Ok(if self.uid == 0 {
                !metadata.is_file() || mode & 0o111 != 0
            } else if owner == self.uid {
                (mode >> 6) & bit == bit
            } else if groups.contains(&group) {
                (mode >> 3) & bit == bit
            } else {
                mode & bit == bit
            })
        };
        let mut ancestors: Vec<&Path> = program.ancestors().skip(1).collect();
        ancestors.reverse();
        for directory in ancestors
            .into_iter()
            .filter(|path| !path.as_os_str().is_empty())
        {
            if !allowed(directory, 0o1)? {
                return Err(format!(
                    "run_as user {} cannot run {}: it may not enter {}",
                    self.name,
                    program.display(),
                    directory.display()
                ));
            }
        }
        // A script (`bin/zato`, `bin/py`) is read by its interpreter as well.
        let bits = if shebang(program).is_some() { 0o5 } else { 0o1 };
        if !allowed(program, bits)? {
            return Err(format!(
                "run_as user {user} cannot run {program}: no read and execute permission for \
                 that user (Zato's installer makes bin/zato and bin/py mode 0740 owned by root: \
                 give the user's group read and execute, e.g. chgrp {user} {program} && chmod \
                 0750 {program})",
                user = self.name,
                program = program.display()
            ));
        }
        Ok(())
    }

    /// Says why this user cannot run Zato: `zato_bin`, the interpreter its `#!` line names, and
    /// `py` beside that interpreter, which Zato starts every component with
    /// (`zato.common.util.proc.get_executable`). Zato's installer makes `bin/zato` and `bin/py`
    /// mode 0740, owned by root: `zato start` exits 0 all the same, and the component dies.
    pub fn check_can_run_zato(&self, zato_bin: &Path) -> Result<(), String> {
        self.check_can_execute(zato_bin)?;
        let Some(interpreter) = shebang(zato_bin) else {
            return Ok(());
        };
        self.check_can_execute(&interpreter)?;
        if let Ok(resolved) = std::fs::canonicalize(&interpreter)
            && resolved != interpreter
        {
            self.check_can_execute(&resolved)?;
        }
        let py = interpreter.with_file_name("py");
        if py.exists() {
            self.check_can_execute(&py)?;
        }
        Ok(())
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

/// The interpreter a script's `#!` line names (its first word), if it has one.
fn shebang(script: &Path) -> Option<PathBuf> {
    use std::io::Read as _;
    let mut start = [0u8; 256];
    let read = std::fs::File::open(script).ok()?.read(&mut start).ok()?;
    let line = std::str::from_utf8(start[..read].strip_prefix(b"#!")?)
        .ok()?
        .lines()
        .next()?;
    line.split_whitespace().next().map(PathBuf::from)
}

#[derive(Debug, Clone)]
pub struct Zato {
    pub bin: PathBuf,
    pub run_as: Option<RunAs>,
}

impl Zato {
    /// The command as logs show it: its environment variables first, secrets as `***`.
    fn shown(&self, args: &[Arg]) -> String {
        let environment = args
            .iter()
            .filter(|arg| matches!(arg, Arg::Env { .. } | Arg::SecretEnv { .. }))
            .map(Arg::shown);
        let command = args
            .iter()
            .filter(|arg| !matches!(arg, Arg::Env { .. } | Arg::SecretEnv { .. }))
            .map(Arg::shown);
        environment
            .chain(std::iter::once(self.bin.display().to_string()))
            .chain(command)
            .collect::<Vec<_>>()
            .join(" ")
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
            .args(args.iter().filter_map(Arg::text))
            .envs(args.iter().filter_map(|arg| match arg {
                Arg::Env { name, value } => Some((name.as_str(), value.as_str())),
                Arg::SecretEnv { name, value } => Some((*name, value.as_str())),
                _ => None,
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
                code: output.status.code(),
                output: text,
            })
        }
    }
}

/// `text` with every secret among `args` replaced by `***`.
pub fn scrub(text: &str, args: &[Arg]) -> String {
    let mut scrubbed = text.to_owned();
    for secret in args.iter().filter_map(Arg::secret) {
        if !secret.is_empty() {
            scrubbed = scrubbed.replace(secret, "***");
        }
    }
    scrubbed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An install laid out as Zato's: `bin/zato` a script run by `bin/python`, `bin/py` beside it.
    fn install(modes: [(&str, u32); 3]) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("code/bin");
        std::fs::create_dir_all(&bin).unwrap();
        for directory in [root.path(), &root.path().join("code"), &bin] {
            std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::copy("/bin/true", bin.join("python")).unwrap();
        std::fs::write(
            bin.join("zato"),
            format!("#!{}\nimport zato\n", bin.join("python").display()),
        )
        .unwrap();
        std::fs::write(bin.join("py"), "#!/bin/sh\nexec python \"$@\"\n").unwrap();
        for (name, mode) in modes {
            std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        let zato = bin.join("zato");
        (root, zato)
    }

    #[test]
    fn run_as_must_be_able_to_run_zato_its_interpreter_and_bin_py() {
        let nobody = RunAs::lookup("nobody").unwrap();
        let (_root, zato) = install([("zato", 0o755), ("python", 0o755), ("py", 0o755)]);
        nobody.check_can_run_zato(&zato).unwrap();

        // As Zato's installer leaves them.
        let (_root, zato) = install([("zato", 0o740), ("python", 0o755), ("py", 0o740)]);
        let said = nobody.check_can_run_zato(&zato).unwrap_err();
        assert!(
            said.starts_with(&format!("run_as user nobody cannot run {}", zato.display())),
            "{said}"
        );

        let (_root, zato) = install([("zato", 0o755), ("python", 0o755), ("py", 0o740)]);
        let py = zato.with_file_name("py");
        let said = nobody.check_can_run_zato(&zato).unwrap_err();
        assert!(
            said.starts_with(&format!("run_as user nobody cannot run {}", py.display())),
            "{said}"
        );
        assert!(
            said.contains(&format!("chmod 0750 {}", py.display())),
            "{said}"
        );

        // A script its interpreter cannot read does not run either.
        let (_root, zato) = install([("zato", 0o711), ("python", 0o755), ("py", 0o755)]);
        assert!(nobody.check_can_run_zato(&zato).is_err());
    }

    #[test]
    fn secrets_are_masked_and_scrubbed() {
        let zato = Zato {
            bin: "zato".into(),
            run_as: None,
        };
        let args = vec![
            Arg::plain("create"),
            Arg::plain("odb"),
            secret_option("--odb-password", "-hunter2"),
        ];
        assert_eq!(zato.shown(&args), "zato create odb --odb-password=***");
        assert_eq!(args[2].text().as_deref(), Some("--odb-password=-hunter2"));
        assert_eq!(scrub("login -hunter2 failed", &args), "login *** failed");
    }

    /// Status tables show a failed command's cause (`muster_proto::daemon::cause`), which reads
    /// the form of this error's text.
    #[test]
    fn a_failed_command_has_a_one_line_cause() {
        let zato = Zato {
            bin: "/opt/zato/3.2/code/bin/zato".into(),
            run_as: None,
        };
        let args = vec![
            secret_env("ZATO_ODB_PASSWORD", "-hunter2"),
            Arg::plain("create"),
            Arg::plain("server"),
            option("--odb_host", "db"),
            Arg::plain("/var/lib/muster-agent/prod/server1"),
        ];
        let error = ZatoError::Failed {
            command: zato.shown(&args),
            status: "exit status: 1".to_owned(),
            code: Some(1),
            output: "Traceback (most recent call last):\n  ...\nValueError: no such ODB".to_owned(),
        };
        assert_eq!(
            muster_proto::daemon::cause(&error.to_string()),
            "`zato create server` failed (exit status: 1): ValueError: no such ODB"
        );
    }
}
