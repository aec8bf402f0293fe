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
                        "a directory inside a services directory (Python packages are not \
                         deployed yet: give modules)"
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

/// `muster deploy --cluster C PATH...`: sets the cluster's services to the modules at the paths.
pub(super) async fn deploy_command(
    cluster: String,
    paths: Vec<PathBuf>,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate::name("cluster name", &cluster)?;
    if paths.is_empty() {
        return Err(CliError::Usage(
            "name the Python modules (or directories of them) to deploy".to_owned(),
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
    if json {
        return write_json(
            out,
            &serde_json::json!({
                "cluster": cluster,
                "revision": answer.revision,
                "changed": answer.changed,
                "files": names,
            }),
        );
    }
    let short = muster_proto::services::short(&answer.revision);
    if answer.changed {
        writeln!(
            out,
            "cluster {cluster}: services revision {short} ({} file(s): {}); each server's agent \
             deploys it (`muster component list --cluster {cluster}` shows which server runs it)",
            names.len(),
            names.join(", ")
        )?;
    } else {
        writeln!(
            out,
            "cluster {cluster} has services revision {short} already; unchanged"
        )?;
    }
    Ok(())
}
