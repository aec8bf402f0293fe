//! `muster deploy --cluster C PATH...` and the cluster file's `[services]`: the Python modules of
//! a cluster's services, read from files and directories, checked, and sent whole
//! (`SetServices`). Every server's agent then deploys what its server lacks.

use super::*;

/// Reads the modules at `paths`: a file is taken as it is (it must be NAME.py); a directory gives
/// every `*.py` directly in it (`__pycache__` is skipped; any other file or directory in it is
/// refused, named). `place` says where the paths came from, for errors.
pub(super) fn read_modules(
    paths: &[PathBuf],
    place: &str,
) -> Result<Vec<v1::ServiceFile>, CliError> {
    let refuse = |path: &Path, reason: String| {
        CliError::Usage(format!("{place}: {}: {reason}", path.display()))
    };
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).map_err(|error| refuse(path, error.to_string()))?;
        let mut modules = Vec::new();
        if metadata.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|error| refuse(path, error.to_string()))?;
            for entry in entries {
                let entry = entry.map_err(|error| refuse(path, error.to_string()))?;
                let inside = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == "__pycache__" {
                    continue;
                }
                if inside.is_dir() {
                    return Err(refuse(
                        &inside,
                        "a directory inside a services directory: a Python package the services \
                         import goes with the Python dependencies ([python] packages, or muster \
                         deploy --package DIR), onto every server's import path"
                            .to_owned(),
                    ));
                }
                if !name.ends_with(".py") {
                    return Err(refuse(
                        &inside,
                        "not a Python module (NAME.py): a services directory holds only Python \
                         modules"
                            .to_owned(),
                    ));
                }
                modules.push(inside);
            }
            modules.sort();
        } else {
            modules.push(path.clone());
        }
        for module in modules {
            let name = module
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let content = muster_proto::files::read_regular(
                &module,
                muster_proto::services::MAX_FILE_BYTES as u64,
            )
            .map_err(|error| refuse(&module, muster_proto::daemon::error_chain(&error)))?;
            files.push(v1::ServiceFile {
                name,
                content,
                ..Default::default()
            });
        }
    }
    muster_proto::services::checked(&files)
        .map_err(|refused| CliError::Usage(format!("{place}: {refused}")))
}

/// Reads enmasse files (each NAME.yaml) and the env file, and checks them together: every
/// placeholder has a value. The values are never shown.
pub(super) fn read_config(
    files: &[PathBuf],
    env_file: Option<&Path>,
    place: &str,
) -> Result<
    (
        Vec<v1::EnmasseFile>,
        std::collections::BTreeMap<String, String>,
    ),
    CliError,
> {
    let refuse = |path: &Path, reason: String| {
        CliError::Usage(format!("{place}: {}: {reason}", path.display()))
    };
    let mut read = Vec::new();
    for path in files {
        let content =
            muster_proto::files::read_regular(path, muster_proto::config::MAX_FILE_BYTES as u64)
                .map_err(|error| refuse(path, muster_proto::daemon::error_chain(&error)))?;
        read.push(v1::EnmasseFile {
            name: path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            content,
            ..Default::default()
        });
    }
    let env = match env_file {
        Some(path) => {
            let text = muster_proto::files::read_regular(path, 1024 * 1024)
                .map_err(|error| refuse(path, muster_proto::daemon::error_chain(&error)))?;
            muster_proto::config::parse_env_file(&text).map_err(|error| refuse(path, error))?
        }
        None => std::collections::BTreeMap::new(),
    };
    let checked = muster_proto::config::checked(&read, &env)
        .map_err(|refused| CliError::Usage(format!("{place}: {refused}")))?;
    Ok((checked, env))
}

/// Reads user-config files (NAME.ini, NAME.conf) and checks them together; a refusal names the
/// file and line, never a value.
pub(super) fn read_user_conf(
    files: &[PathBuf],
    place: &str,
) -> Result<Vec<v1::UserConfFile>, CliError> {
    let mut read = Vec::with_capacity(files.len());
    for path in files {
        let content =
            muster_proto::files::read_regular(path, muster_proto::user_conf::MAX_FILE_BYTES as u64)
                .map_err(|error| {
                    CliError::Usage(format!(
                        "{place}: {}: {}",
                        path.display(),
                        muster_proto::daemon::error_chain(&error)
                    ))
                })?;
        read.push(v1::UserConfFile {
            name: path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            content,
        });
    }
    muster_proto::user_conf::checked(&read)
        .map_err(|refused| CliError::Usage(format!("{place}: {refused}")))
}

/// Reads a requirements file (none: no requirements) and, when given, a wheelhouse (a directory
/// of `*.whl`; anything else in it is refused, named) and package directories (each built into
/// its wheel, [`read_package`]), and checks them together.
pub(super) fn read_python(
    requirements: Option<&Path>,
    wheelhouse: Option<&Path>,
    packages: &[PathBuf],
    place: &str,
) -> Result<(String, Vec<v1::PythonWheel>), CliError> {
    let refuse = |path: &Path, reason: String| {
        CliError::Usage(format!("{place}: {}: {reason}", path.display()))
    };
    let text = match requirements {
        Some(requirements) => muster_proto::files::read_regular(
            requirements,
            muster_proto::python::MAX_REQUIREMENTS_BYTES as u64,
        )
        .map_err(|error| refuse(requirements, muster_proto::daemon::error_chain(&error)))?,
        None => String::new(),
    };
    let mut wheels = Vec::new();
    if let Some(directory) = wheelhouse {
        let entries =
            std::fs::read_dir(directory).map_err(|error| refuse(directory, error.to_string()))?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| refuse(directory, error.to_string()))?;
            paths.push(entry.path());
        }
        paths.sort();
        for path in paths {
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !path.is_file() || !name.ends_with(".whl") {
                return Err(refuse(
                    &path,
                    "not a wheel (NAME-VERSION-TAGS.whl): a wheelhouse holds only wheels"
                        .to_owned(),
                ));
            }
            let size = std::fs::metadata(&path)
                .map_err(|error| refuse(&path, error.to_string()))?
                .len();
            if size > muster_proto::python::MAX_WHEEL_BYTES as u64 {
                return Err(refuse(
                    &path,
                    format!(
                        "{size} bytes; a wheel may have at most {}",
                        muster_proto::python::MAX_WHEEL_BYTES
                    ),
                ));
            }
            let content = std::fs::read(&path).map_err(|error| refuse(&path, error.to_string()))?;
            wheels.push(v1::PythonWheel {
                name,
                content,
                ..Default::default()
            });
        }
    }
    for package in packages {
        wheels.push(read_package(package, place)?);
    }
    let wheels = muster_proto::python::checked_wheels(&text, &wheels)
        .map_err(|refused| CliError::Usage(format!("{place}: {refused}")))?;
    Ok((text, wheels))
}

/// Reads the Python package in `directory` (named by the directory; it has an `__init__.py`):
/// every `*.py` in it and in its directories, `__pycache__` skipped and anything else refused,
/// named; built into the wheel Muster carries it as ([`muster_proto::package`]).
fn read_package(directory: &Path, place: &str) -> Result<v1::PythonWheel, CliError> {
    let refuse = |path: &Path, reason: String| {
        CliError::Usage(format!("{place}: {}: {reason}", path.display()))
    };
    let metadata =
        std::fs::metadata(directory).map_err(|error| refuse(directory, error.to_string()))?;
    if !metadata.is_dir() {
        return Err(refuse(
            directory,
            "not a directory: a package is a directory with an __init__.py".to_owned(),
        ));
    }
    let name = directory
        .canonicalize()
        .ok()
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let mut files = Vec::new();
    let mut pending = vec![(directory.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|error| refuse(&dir, error.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|error| refuse(&dir, error.to_string()))?;
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name == "__pycache__" {
                continue;
            }
            let kind = entry
                .file_type()
                .map_err(|error| refuse(&path, error.to_string()))?;
            if kind.is_dir() {
                pending.push((path, format!("{prefix}{file_name}/")));
                continue;
            }
            if !file_name.ends_with(".py") {
                return Err(refuse(
                    &path,
                    "not a Python module (NAME.py): a package holds only Python modules and \
                     directories of them"
                        .to_owned(),
                ));
            }
            if files.len() == muster_proto::package::MAX_FILES {
                return Err(refuse(
                    directory,
                    format!(
                        "more than {} files; a package may have at most that many",
                        muster_proto::package::MAX_FILES
                    ),
                ));
            }
            let content = muster_proto::files::read_regular(
                &path,
                muster_proto::services::MAX_FILE_BYTES as u64,
            )
            .map_err(|error| refuse(&path, muster_proto::daemon::error_chain(&error)))?;
            files.push((format!("{prefix}{file_name}"), content.into_bytes()));
        }
    }
    muster_proto::package::wheel(&name, &files)
        .map_err(|refused| CliError::Usage(format!("{place}: {}: {refused}", directory.display())))
}

/// Sends a cluster's Python dependencies (`SetPython`): the requirements, then each wheel in
/// pieces. Returns the revision and whether it changed.
pub(super) async fn send_python(
    connection: &mut Connection,
    cluster: &str,
    requirements: &str,
    wheels: &[v1::PythonWheel],
) -> Result<v1::SetPythonResponse, CliError> {
    let mut pieces = vec![v1::SetPythonPiece {
        cluster: cluster.to_owned(),
        requirements: requirements.to_owned(),
        ..Default::default()
    }];
    for wheel in wheels {
        for piece in wheel.content.chunks(muster_proto::PIECE_BYTES) {
            pieces.push(v1::SetPythonPiece {
                wheel_name: wheel.name.clone(),
                wheel_piece: piece.to_vec(),
                wheel_package: wheel.package,
                ..Default::default()
            });
        }
    }
    connection
        .client
        .set_python(tokio_stream::iter(pieces))
        .await
        .answer(connection)
}

/// `muster deploy --cluster C PATH...` sets the cluster's services to the modules at the paths;
/// `--config FILE... [--env-file F]` its configuration.
/// What `muster deploy` sets: services (paths), configuration (`--config`, `--env-file`) or
/// Python dependencies (`--requirements`, `--wheelhouse`, `--package`), one of them.
pub(super) struct Deploy {
    pub(super) paths: Vec<PathBuf>,
    pub(super) config: Vec<PathBuf>,
    pub(super) env_file: Option<PathBuf>,
    pub(super) requirements: Option<PathBuf>,
    pub(super) wheelhouse: Option<PathBuf>,
    pub(super) packages: Vec<PathBuf>,
    pub(super) user_conf: Vec<PathBuf>,
}

pub(super) async fn deploy_command(
    cluster: String,
    what: Deploy,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let Deploy {
        paths,
        config,
        env_file,
        requirements,
        wheelhouse,
        packages,
        user_conf,
    } = what;
    validate::name("cluster name", &cluster)?;
    let python = requirements.is_some() || !packages.is_empty();
    let kinds = usize::from(!paths.is_empty())
        + usize::from(!config.is_empty())
        + usize::from(python)
        + usize::from(!user_conf.is_empty());
    if kinds > 1 {
        return Err(CliError::Usage(
            "deploy services (PATH...), configuration (--config), Python dependencies \
             (--requirements, --package) or user-config files (--user-conf), one at a time"
                .to_owned(),
        ));
    }
    if !user_conf.is_empty() {
        let files = read_user_conf(&user_conf, "muster deploy --user-conf")?;
        let names: Vec<String> = files.iter().map(|file| file.name.clone()).collect();
        let mut connection = connect(connection_args).await?;
        let answer = connection
            .client
            .set_user_conf(v1::SetUserConfRequest {
                cluster: cluster.clone(),
                files,
            })
            .await
            .answer(&connection)?;
        let detail = format!(
            "({} file(s): {}); each server's agent writes them and loads them into its running \
             server",
            names.len(),
            names.join(", ")
        );
        return report_set(
            out,
            json,
            &serde_json::json!({
                "cluster": cluster,
                "revision": answer.revision,
                "changed": answer.changed,
                "files": names,
            }),
            &cluster,
            "user-config files",
            &detail,
        );
    }
    if wheelhouse.is_some() && requirements.is_none() {
        return Err(CliError::Usage(
            "--wheelhouse goes with --requirements".to_owned(),
        ));
    }
    if python {
        let (text, wheels) = read_python(
            requirements.as_deref(),
            wheelhouse.as_deref(),
            &packages,
            "muster deploy --requirements",
        )?;
        let names = muster_proto::python::checked_requirements(&text)
            .map_err(|refused| CliError::Usage(refused.to_string()))?;
        let mut connection = connect(connection_args).await?;
        let answer = send_python(&mut connection, &cluster, &text, &wheels).await?;
        let detail = format!(
            "({}); each server installs it beside itself and running servers restart one at a \
             time to load it",
            muster_proto::python::summary(&names, &wheels)
        );
        return report_set(
            out,
            json,
            &serde_json::json!({
                "cluster": cluster,
                "revision": answer.revision,
                "changed": answer.changed,
                "requirements": names,
                "wheels": wheels
                    .iter()
                    .filter(|wheel| !wheel.package)
                    .map(|wheel| wheel.name.clone())
                    .collect::<Vec<_>>(),
                "packages": wheels
                    .iter()
                    .filter(|wheel| wheel.package)
                    .map(|wheel| wheel.name.clone())
                    .collect::<Vec<_>>(),
            }),
            &cluster,
            "Python dependencies",
            &detail,
        );
    }
    if !config.is_empty() {
        let (files, env) = read_config(&config, env_file.as_deref(), "muster deploy --config")?;
        let names: Vec<String> = files.iter().map(|file| file.name.clone()).collect();
        let env_count = env.len();
        let mut connection = connect(connection_args).await?;
        let answer = connection
            .client
            .set_config(v1::SetConfigRequest {
                cluster: cluster.clone(),
                files,
                env: env.into_iter().collect(),
            })
            .await
            .answer(&connection)?;
        let detail = format!(
            "({} file(s): {}; {env_count} env value(s)); one server's agent imports it with \
             `zato enmasse`",
            names.len(),
            names.join(", ")
        );
        return report_set(
            out,
            json,
            &serde_json::json!({
                "cluster": cluster,
                "revision": answer.revision,
                "changed": answer.changed,
                "files": names,
                "env_values": env_count,
            }),
            &cluster,
            "configuration",
            &detail,
        );
    }
    if env_file.is_some() {
        return Err(CliError::Usage("--env-file goes with --config".to_owned()));
    }
    if paths.is_empty() {
        return Err(CliError::Usage(
            "name the Python modules (or directories of them) to deploy, or --config FILE, or \
             --requirements FILE"
                .to_owned(),
        ));
    }
    let files = read_modules(&paths, "muster deploy")?;
    let names: Vec<String> = files.iter().map(|file| file.name.clone()).collect();
    let mut connection = connect(connection_args).await?;
    let answer = connection
        .client
        .set_services(v1::SetServicesRequest {
            cluster: cluster.clone(),
            files,
        })
        .await
        .answer(&connection)?;
    let detail = format!(
        "({} file(s): {}); each server's agent deploys it (`muster component list --cluster \
         {cluster}` shows which server runs it)",
        names.len(),
        names.join(", ")
    );
    report_set(
        out,
        json,
        &serde_json::json!({
            "cluster": cluster,
            "revision": answer.revision,
            "changed": answer.changed,
            "files": names,
        }),
        &cluster,
        "services",
        &detail,
    )
}

/// What `muster deploy` says: the `answer` (`revision`, `changed`) as JSON, or whether cluster
/// `cluster` took the new `kind` revision (with its `detail`) or had it already.
fn report_set(
    out: &mut impl std::io::Write,
    json: bool,
    answer: &serde_json::Value,
    cluster: &str,
    kind: &str,
    detail: &str,
) -> Result<(), CliError> {
    if json {
        return write_json(out, answer);
    }
    let short = muster_proto::services::short(answer["revision"].as_str().unwrap_or_default());
    if answer["changed"] == true {
        writeln!(out, "cluster {cluster}: {kind} revision {short} {detail}")?;
    } else {
        writeln!(
            out,
            "cluster {cluster} has {kind} revision {short} already; unchanged"
        )?;
    }
    Ok(())
}
