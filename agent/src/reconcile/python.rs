//! A server's Python dependencies: the cluster's pip requirements, installed beside the server
//! (`DIR/muster-python/REVISION`, with `pip install --target`) and put on its `PYTHONPATH` when
//! it starts, so that its services import them. Beside, not into, Zato's own environment: the
//! installation is shared by every component of the host, and a cluster's packages must not
//! change another's, nor Zato's. A requirement that would bring another version of a package
//! Zato itself runs is refused, named (it would come first on the path and replace Zato's).
//!
//! With a wheelhouse, pip installs from the cluster's wheels only (`--no-index`), which the
//! daemon fetched into the host's wheel cache ([`WHEEL_CACHE`]); without one, from the index
//! the host's pip configuration names.
//!
//! A running server started with another revision restarts to load the new one only when its
//! desired state says it may (`python_restart`: one server of a cluster at a time, out of its
//! load balancers' rotation). A revision that cannot be installed is reported, and the server
//! goes on (or starts again) with the last one it had.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::*;

/// Beside a server's directory: its installed revisions, and the file naming the one its
/// process was started with.
pub const PYTHON_DIR: &str = "muster-python";
const STARTED: &str = "started";
const COMPLETE: &str = ".muster-complete";
/// Under the agent's state directory: wheels by SHA-256, as the daemon fetched them.
pub const WHEEL_CACHE: &str = "wheels";
/// How long one `pip install` may run.
const PIP_TIMEOUT: Duration = Duration::from_secs(600);
/// When a revision that did not install is tried again (a new revision is tried at once).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(120);

/// What the agent knows of one server's Python dependencies between passes.
#[derive(Debug, Default)]
pub struct PythonLocal {
    /// The revision that last did not install, why, and when to try again.
    pub failed: String,
    pub error: String,
    pub retry_at: Option<Instant>,
}

/// The revision a server's process was last started with (empty: none).
pub fn started_revision(directory: &Path) -> String {
    std::fs::read_to_string(directory.join(PYTHON_DIR).join(STARTED))
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

fn revision_dir(directory: &Path, revision: &str) -> PathBuf {
    directory.join(PYTHON_DIR).join(revision)
}

/// Whether `revision` is installed, whole, beside the server in `directory`.
pub fn installed(directory: &Path, revision: &str) -> bool {
    muster_proto::python::valid_sha256(revision)
        && revision_dir(directory, revision).join(COMPLETE).exists()
}

/// What `pip` and Python print, kept short: pip's `ERROR:` lines when it has any, else the last
/// lines, where the cause is; on one line.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("ERROR: "))
        .collect();
    if errors.is_empty() {
        lines[lines.len().saturating_sub(3)..].join("; ")
    } else {
        format!("pip: {}", errors.join("; "))
    }
}

impl ZatoComponent<'_> {
    /// The Python that runs Zato: the agent's config's, else the interpreter the `zato` command
    /// of the server's installation (`zato.install`) names on its first line (Zato's installer writes `#!/opt/zato/.../bin/python`), else
    /// `python` beside it.
    fn python(&self) -> PathBuf {
        if let Some(python) = &self.host.python_bin {
            return python.clone();
        }
        // The installation the server runs: its Python is the one its packages must suit.
        let bin = self.install().ok().flatten().unwrap_or(&self.host.zato.bin);
        let zato = resolve_program(bin).unwrap_or_else(|| bin.to_owned());
        let named = std::fs::read(&zato).ok().and_then(|bytes| {
            let first = bytes.split(|byte| *byte == b'\n').next()?;
            let line = std::str::from_utf8(first).ok()?.strip_prefix("#!")?;
            let interpreter = PathBuf::from(line.split_whitespace().next()?);
            interpreter.is_absolute().then_some(interpreter)
        });
        named.unwrap_or_else(|| {
            zato.parent()
                .map(|bin| bin.join("python"))
                .unwrap_or_else(|| PathBuf::from("python3"))
        })
    }

    /// Installs the server's desired revision if it is not yet, and says whether its running
    /// process must restart now to load it. Errors when the server cannot start at all: the
    /// revision does not install and it has no earlier one.
    pub(super) async fn prepare_python(
        &self,
        directory: &Path,
        running: bool,
        local: &mut Local,
    ) -> Result<bool, StepError> {
        let component = self.component;
        let desired = &component.python_revision;
        // Revisions and hashes name files here: only ones as Muster writes them.
        let names_valid = (desired.is_empty() || muster_proto::python::valid_sha256(desired))
            && component.python_wheels.iter().all(|wheel| {
                muster_proto::python::valid_sha256(&wheel.sha256)
                    && muster_proto::python::valid_wheel_name(&wheel.name)
            });
        if !names_valid {
            return Err(StepError::Other(format!(
                "refused: Python dependencies revision {desired:?} or one of its wheels is not named as Muster names them"
            )));
        }
        let state = &mut local.python;
        if desired.is_empty() || installed(directory, desired) {
            *state = PythonLocal::default();
        } else {
            if state.failed != *desired {
                state.retry_at = None;
            }
            let fetching = component.python_wheels.iter().find(|wheel| {
                !self
                    .host
                    .wheel_cache
                    .join(format!("{}.whl", wheel.sha256))
                    .exists()
            });
            if let Some(wheel) = fetching {
                // The daemon fetches it; the next pass looks again.
                state.error = format!(
                    "Python dependencies {}: waiting for wheel {} to be fetched from the coordinator",
                    muster_proto::services::short(desired),
                    wheel.name
                );
            } else if state.retry_at.is_none_or(|at| Instant::now() >= at) {
                match self.install_python(directory).await {
                    Ok(()) => *state = PythonLocal::default(),
                    Err(error) => {
                        tracing::warn!(component = %component.name, revision = %desired, error = %error, "Python dependencies did not install");
                        state.failed = desired.clone();
                        state.error = error.to_string();
                        state.retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
                    }
                }
            }
        }
        // A server that never started does not start without them; one that ran goes on (or
        // starts again) with what it had.
        let never_started = !directory.join(PYTHON_DIR).join(STARTED).exists();
        if !running && never_started && !desired.is_empty() && !installed(directory, desired) {
            return Err(StepError::Other(state.error.clone()));
        }
        let started = started_revision(directory);
        Ok(running
            && component.python_restart
            && started != *desired
            && (desired.is_empty() || installed(directory, desired)))
    }

    /// The `PYTHONPATH` a server starts with: its desired revision's directory when installed,
    /// else the one it had (recorded as the revision it was started with).
    pub(super) fn python_for_start(&self, directory: &Path) -> Option<PathBuf> {
        let component = self.component;
        let desired = &component.python_revision;
        let revision = if desired.is_empty() || installed(directory, desired) {
            desired.clone()
        } else {
            started_revision(directory)
        };
        // Recorded even when empty: the server has started, with no dependencies.
        let base = directory.join(PYTHON_DIR);
        if std::fs::create_dir_all(&base).is_ok() {
            let _ = self.host.chown(&base);
            let _ = files::write_atomic(&base.join(STARTED), revision.as_bytes(), 0o644);
        }
        (!revision.is_empty()).then(|| revision_dir(directory, &revision))
    }

    /// `pip install --target` of the desired revision into a new directory, checked against
    /// Zato's own packages, then moved into place whole.
    async fn install_python(&self, directory: &Path) -> Result<(), StepError> {
        let component = self.component;
        let revision = &component.python_revision;
        let short = muster_proto::services::short(revision);
        muster_proto::python::checked_requirements(&component.python_requirements)
            .map_err(|refused| format!("Python dependencies {short}: {refused}"))?;
        let base = directory.join(PYTHON_DIR);
        std::fs::create_dir_all(&base)
            .map_err(|error| format!("cannot create {}: {error}", base.display()))?;
        self.host.chown(&base)?;
        let partial = base.join(format!("{revision}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)
            .map_err(|error| format!("cannot create {}: {error}", partial.display()))?;
        self.host.chown(&partial)?;
        let requirements = base.join(format!("{revision}.requirements.txt"));
        std::fs::write(&requirements, &component.python_requirements)
            .map_err(|error| format!("cannot write {}: {error}", requirements.display()))?;
        self.host.chown(&requirements)?;
        let mut args: Vec<String> = vec![
            "-m".into(),
            "pip".into(),
            "install".into(),
            "--no-cache-dir".into(),
            "--no-input".into(),
            "--disable-pip-version-check".into(),
            "--no-warn-script-location".into(),
            format!("--target={}", partial.display()),
            format!("--requirement={}", requirements.display()),
        ];
        if !component.python_wheels.is_empty() {
            let wheelhouse = self.wheelhouse(&base)?;
            if component.python_wheels.iter().any(|wheel| !wheel.package) {
                // From the cluster's wheels only: no index, and none of the host's pip settings
                // (`PIP_FIND_LINKS`, pip.conf) adding other places.
                args.insert(2, "--isolated".into());
                args.push("--no-index".into());
                args.push(format!("--find-links={}", wheelhouse.display()));
            }
            // The cluster's packages, by their paths (with or without an index).
            for wheel in component.python_wheels.iter().filter(|wheel| wheel.package) {
                args.push(wheelhouse.join(&wheel.name).display().to_string());
            }
        }
        tracing::info!(component = %component.name, revision = %revision, "installing Python dependencies");
        let output = self
            .run_python(&args, &base)
            .await
            .map_err(|error| format!("Python dependencies {short} did not install: {error}"))?;
        tracing::debug!(output = %output, "pip install");
        self.check_against_zato(&partial)
            .await
            .map_err(|error| format!("Python dependencies {short}: {error}"))?;
        self.check_packages(&partial)
            .await
            .map_err(|error| format!("Python dependencies {short}: {error}"))?;
        std::fs::write(partial.join(COMPLETE), revision)
            .map_err(|error| format!("cannot mark {}: {error}", partial.display()))?;
        let target = revision_dir(directory, revision);
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&partial, &target)
            .map_err(|error| format!("cannot move {} into place: {error}", partial.display()))?;
        let _ = std::fs::remove_file(&requirements);
        self.prune_python(directory, revision);
        Ok(())
    }

    /// The cluster's wheels, copied from the host's cache (where the daemon fetched them, by
    /// hash) under their own names, readable by the user Zato runs as.
    fn wheelhouse(&self, base: &Path) -> Result<PathBuf, StepError> {
        let component = self.component;
        let wheelhouse = base.join("wheelhouse");
        let _ = std::fs::remove_dir_all(&wheelhouse);
        std::fs::create_dir_all(&wheelhouse)
            .map_err(|error| format!("cannot create {}: {error}", wheelhouse.display()))?;
        self.host.chown(&wheelhouse)?;
        for wheel in &component.python_wheels {
            if !muster_proto::python::valid_wheel_name(&wheel.name) {
                return Err(StepError::Other(format!(
                    "refused: wheel {:?} is not a wheel's name",
                    wheel.name
                )));
            }
            let cached = self.host.wheel_cache.join(format!("{}.whl", wheel.sha256));
            if !cached.exists() {
                return Err(StepError::Other(format!(
                    "waiting for wheel {} to be fetched from the coordinator",
                    wheel.name
                )));
            }
            let copy = wheelhouse.join(&wheel.name);
            std::fs::copy(&cached, &copy)
                .map_err(|error| format!("cannot copy wheel {}: {error}", wheel.name))?;
            self.host.chown(&copy)?;
        }
        Ok(wheelhouse)
    }

    /// Refuses a distribution in `target` that Zato's environment also has in another version.
    async fn check_against_zato(&self, target: &Path) -> Result<(), StepError> {
        const LIST: &str = "import importlib.metadata as m, json, sys\n\
            print(json.dumps({(d.metadata['Name'] or '').lower().replace('_', '-'): d.version \
            for d in m.distributions(**({'path': sys.argv[1:]} if sys.argv[1:] else {}))}))";
        let zato: BTreeMap<String, String> = self.distributions(LIST, None).await?;
        let ours: BTreeMap<String, String> = self.distributions(LIST, Some(target)).await?;
        for (name, version) in &ours {
            if let Some(zatos) = zato.get(name)
                && zatos != version
            {
                return Err(StepError::Other(format!(
                    "the requirements bring {name} {version}, but Zato runs {name} {zatos}: a second \
                     version would replace Zato's own; require {name}=={zatos}, or leave it out"
                )));
            }
        }
        Ok(())
    }

    /// Imports every module of the cluster's packages, installed in `target`, with Zato's Python
    /// before any server loads them: a package that does not import (a syntax error, a missing
    /// dependency) is refused with Python's error and line, and the servers go on with what they
    /// had. A package named like a module Zato's Python already has is refused too: it would hide
    /// that module (or be hidden by it).
    async fn check_packages(&self, target: &Path) -> Result<(), StepError> {
        let component = self.component;
        const CHECK: &str = r#"
import importlib, importlib.util, json, os, pkgutil, sys, traceback

target, names = sys.argv[1], sys.argv[2:]

def say(text):
    print(json.dumps(text))
    sys.exit(0)

for name in names:
    if importlib.util.find_spec(name) is not None:
        say(f"package {name} has the name of a module Zato's Python already has: rename it")

sys.path.insert(0, target)

def reraise(name):
    raise

for name in names:
    try:
        package = importlib.import_module(name)
        for found in pkgutil.walk_packages(package.__path__, name + '.', onerror=reraise):
            importlib.import_module(found.name)
    except BaseException as error:
        if isinstance(error, SyntaxError) and error.filename:
            where, line, text = error.filename, error.lineno, error.msg
        else:
            frames = traceback.extract_tb(error.__traceback__)
            ours = [f for f in frames if f.filename.startswith(target + os.sep)] or frames
            where, line, text = ours[-1].filename, ours[-1].lineno, str(error)
        if where.startswith(target + os.sep):
            where = os.path.relpath(where, target)
        say(f'package {name} does not import: {where}, line {line}: {type(error).__name__}: {text}')

say('')
"#;
        let names: Vec<String> = component
            .python_wheels
            .iter()
            .filter(|wheel| wheel.package)
            .map(|wheel| wheel.name.split('-').next().unwrap_or_default().to_owned())
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        if let Some(name) = names
            .iter()
            .find(|name| !muster_proto::package::valid_name(name))
        {
            return Err(StepError::Refused(format!(
                "package {name:?} is not a Python name"
            )));
        }
        let mut args = vec![
            "-I".to_owned(),
            "-c".to_owned(),
            CHECK.to_owned(),
            target.display().to_string(),
        ];
        args.extend(names);
        let output = self.run_python(&args, Path::new("/")).await?;
        let verdict: String = serde_json::from_str(output.lines().last().unwrap_or_default())
            .map_err(|error| format!("cannot read the check of the packages: {error}"))?;
        if verdict.is_empty() {
            Ok(())
        } else {
            Err(StepError::Other(verdict))
        }
    }

    async fn distributions(
        &self,
        script: &str,
        path: Option<&Path>,
    ) -> Result<BTreeMap<String, String>, StepError> {
        let mut args = vec!["-c".to_owned(), script.to_owned()];
        if let Some(path) = path {
            args.push(path.display().to_string());
        }
        let output = self.run_python(&args, Path::new("/")).await?;
        serde_json::from_str(output.lines().last().unwrap_or_default()).map_err(|error| {
            StepError::Other(format!("cannot read the list of Python packages: {error}"))
        })
    }

    /// Runs Zato's Python with `args`, as the user Zato runs as, with no `PYTHONPATH` of the
    /// agent's own; returns its standard output, or its last lines of output on failure.
    async fn run_python(&self, args: &[String], directory: &Path) -> Result<String, StepError> {
        let python = self.python();
        let mut command = tokio::process::Command::new(&python);
        command
            .args(args)
            .env_remove("PYTHONPATH")
            .env("PIP_NO_INPUT", "1")
            .current_dir(directory)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(user) = &self.host.zato.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        let child = command
            .spawn()
            .map_err(|error| format!("cannot run {}: {error}", python.display()))?;
        let output = tokio::time::timeout(PIP_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                format!(
                    "`{} -m pip` did not finish within {PIP_TIMEOUT:?}",
                    python.display()
                )
            })?
            .map_err(|error| format!("cannot run {}: {error}", python.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(StepError::Other(tail(&format!("{stdout}\n{stderr}"))))
        }
    }

    /// Removes installed revisions other than `keep` and the one the process runs.
    fn prune_python(&self, directory: &Path, keep: &str) {
        let started = started_revision(directory);
        let Ok(entries) = std::fs::read_dir(directory.join(PYTHON_DIR)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_revision = name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit());
            if is_revision && name != keep && name != started {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_a_server_started_with_is_read_back() {
        let scratch = tempfile::tempdir().unwrap();
        assert_eq!(started_revision(scratch.path()), "");
        std::fs::create_dir(scratch.path().join(PYTHON_DIR)).unwrap();
        std::fs::write(scratch.path().join(PYTHON_DIR).join(STARTED), "abc\n").unwrap();
        assert_eq!(started_revision(scratch.path()), "abc");
        assert!(!installed(scratch.path(), "abc"));
        assert!(!installed(scratch.path(), ""));
    }

    #[test]
    fn pips_errors_or_last_lines_are_kept_on_one_line() {
        let output = (1..=10)
            .map(|line| format!("line {line}\n"))
            .collect::<String>();
        assert_eq!(tail(&output), "line 8; line 9; line 10");
        let pip = "Looking in links: /w\nProcessing x\nERROR: Could not find a version that satisfies \
                   the requirement inflection==9.9 (from versions: 0.5.1)\nERROR: No matching \
                   distribution found for inflection==9.9\n";
        assert_eq!(
            tail(pip),
            "pip: Could not find a version that satisfies the requirement inflection==9.9 (from \
             versions: 0.5.1); No matching distribution found for inflection==9.9"
        );
    }
}
