//! `muster get cluster NAME --dir DIR`: the cluster written back as a directory `muster apply`
//! takes whole — `cluster.toml` with `[services]`, `[config]` and `[python]`, the modules, the
//! enmasse files, the requirements and the wheels — so that an environment is reproducible from
//! files. The env values are secrets and are not written: `config/env.ini.example` names them;
//! nor are the user-config files, which `cluster.toml` names under `user-conf/`.

use std::collections::BTreeMap;

use super::*;

/// Writes cluster `cluster` (with its services' and enmasse files' contents) and `components`
/// into the new or empty directory `dir`; returns the files written, relative to it.
pub(super) async fn write_directory(
    connection: &mut Connection,
    cluster: &v1::Cluster,
    components: &[ComponentView],
    dir: &Path,
) -> Result<Vec<String>, CliError> {
    let refuse = |reason: String| {
        CliError::Usage(format!(
            "muster get cluster --dir {}: {reason}",
            dir.display()
        ))
    };
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(refuse(
            "not empty: give a new or empty directory".to_owned(),
        ));
    }
    let mut file = file_of(cluster, components);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if !cluster.services_revision.is_empty() {
        for module in &cluster.services {
            // Checked when stored; checked again before the name becomes a path here.
            if !muster_proto::services::valid_name(&module.name) {
                return Err(refuse(format!(
                    "the coordinator named a module {:?}",
                    module.name
                )));
            }
            files.insert(
                format!("services/{}", module.name),
                module.content.clone().into_bytes(),
            );
        }
        file.services = Some(ServicesSpec {
            paths: vec![PathBuf::from("services")],
        });
    }
    if !cluster.config_revision.is_empty() {
        for enmasse in &cluster.config_files {
            if !muster_proto::config::valid_name(&enmasse.name) {
                return Err(refuse(format!(
                    "the coordinator named an enmasse file {:?}",
                    enmasse.name
                )));
            }
            files.insert(
                format!("config/{}", enmasse.name),
                enmasse.content.clone().into_bytes(),
            );
        }
        let mut template = String::from(
            "# The values of the enmasse files' {Zato_Enmasse_Env.NAME} placeholders: secrets, not\n\
             # written by `muster get`. Copy this file to env.ini (mode 0600, out of version\n\
             # control) and give each its value.\n[env]\n",
        );
        for name in &cluster.config_env_names {
            template.push_str(&format!("{name}=\n"));
        }
        files.insert("config/env.ini.example".to_owned(), template.into_bytes());
        file.config = Some(ConfigSpec {
            files: cluster
                .config_files
                .iter()
                .map(|enmasse| PathBuf::from(format!("config/{}", enmasse.name)))
                .collect(),
            env_file: (!cluster.config_env_names.is_empty())
                .then(|| PathBuf::from("config/env.ini")),
        });
    }
    if !cluster.user_conf_revision.is_empty() {
        // Secrets: named in cluster.toml, never written (as the env values).
        let mut paths = Vec::new();
        for name in &cluster.user_conf_names {
            if !muster_proto::user_conf::valid_name(name) {
                return Err(refuse(format!(
                    "the coordinator named a user-config file {name:?}"
                )));
            }
            paths.push(PathBuf::from(format!("user-conf/{name}")));
        }
        file.user_conf = Some(UserConfSpec { files: paths });
    }
    if !cluster.python_revision.is_empty() {
        let mut spec = PythonSpec::default();
        if !cluster.python_requirements.trim().is_empty() {
            files.insert(
                "python/requirements.txt".to_owned(),
                cluster.python_requirements.clone().into_bytes(),
            );
            spec.requirements = Some(PathBuf::from("python/requirements.txt"));
        }
        for wheel in &cluster.python_wheels {
            if !muster_proto::python::valid_wheel_name(&wheel.name) {
                return Err(refuse(format!(
                    "the coordinator named a wheel {:?}",
                    wheel.name
                )));
            }
            let content = fetch_wheel(connection, &cluster.name, wheel).await?;
            if !wheel.package {
                files.insert(format!("python/wheelhouse/{}", wheel.name), content);
                spec.wheelhouse = Some(PathBuf::from("python/wheelhouse"));
                continue;
            }
            // A package goes back as its directory (its files' names checked: Python names).
            let (package, package_files) = muster_proto::package::files(&v1::PythonWheel {
                content,
                ..wheel.clone()
            })
            .map_err(|refused| refuse(refused.to_string()))?;
            for (relative, content) in package_files {
                files.insert(format!("python/packages/{package}/{relative}"), content);
            }
            spec.packages
                .push(PathBuf::from(format!("python/packages/{package}")));
        }
        file.python = Some(spec);
    }
    let text =
        toml::to_string(&file).map_err(|error| CliError::Output(std::io::Error::other(error)))?;
    let mut header = format!(
        "# Cluster {} as `muster get cluster {} --dir` wrote it; `muster apply -f cluster.toml` takes it.\n",
        cluster.name, cluster.name
    );
    if cluster.has_odb_password {
        header.push_str(
            "# Its ODB password is not written here: to create the cluster elsewhere, add\n\
             # password_file = \"PATH\" under [cluster.odb].\n",
        );
    }
    if !cluster.config_env_names.is_empty() {
        header.push_str("# config/env.ini is not written (its values are secrets): make it from config/env.ini.example.\n");
    }
    files.insert(
        "cluster.toml".to_owned(),
        format!("{header}{text}").into_bytes(),
    );
    for (relative, content) in &files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| refuse(format!("cannot create {}: {error}", parent.display())))?;
        }
        std::fs::write(&path, content)
            .map_err(|error| refuse(format!("cannot write {}: {error}", path.display())))?;
    }
    Ok(files.into_keys().collect())
}

/// One wheel of the cluster, whole, checked against its hash.
async fn fetch_wheel(
    connection: &mut Connection,
    cluster: &str,
    wheel: &v1::PythonWheel,
) -> Result<Vec<u8>, CliError> {
    let mut pieces = connection
        .client
        .get_wheel(v1::GetWheelRequest {
            cluster: cluster.to_owned(),
            sha256: wheel.sha256.clone(),
        })
        .await
        .answer(connection)?;
    let mut content = Vec::new();
    while let Some(piece) = pieces
        .message()
        .await
        .map_err(|status| connection.status_error(&status))?
    {
        content.extend_from_slice(&piece.piece);
        if content.len() > muster_proto::python::MAX_WHEEL_BYTES {
            return Err(CliError::Refused(format!(
                "wheel {} is larger than it may be",
                wheel.name
            )));
        }
    }
    if muster_proto::python::sha256_bytes(&content) != wheel.sha256 {
        return Err(CliError::Refused(format!(
            "wheel {} did not arrive whole (its SHA-256 differs)",
            wheel.name
        )));
    }
    Ok(content)
}
