//! `muster apply -f FILE [--dry-run]` and `muster get cluster NAME`: a whole cluster described in
//! one TOML file — its ODB, its components by host or by a label selector, its services and its
//! configuration — converged to, idempotently, and written back (the services' and
//! configuration's files are not written back: a comment names their revision).
//!
//! Apply reads and checks the whole file and what the coordinator holds before it changes
//! anything, then shows the plan (`+` create, `~` configure, `-` remove, `=` unchanged) and, unless
//! `--dry-run`, carries it out: creates first, then settings, then removals, so a replaced server
//! has its successor before it goes. Components of the cluster the file does not name are removed:
//! the file is the whole cluster.

use super::*;

mod export;
mod file;
mod plan;

use file::*;
use plan::*;

fn current_of(components: &[ComponentView]) -> Vec<Current> {
    components
        .iter()
        .filter_map(|component| {
            Some(Current {
                role: component.role.parse().ok()?,
                name: component.name.clone(),
                host: component.host.clone(),
                port: u16::try_from(component.port).ok()?,
                settings: component.load_balancer.as_ref().map(Into::into),
            })
        })
        .collect()
}

fn odb_settings(spec: &OdbSpec) -> Result<v1::OdbSettings, CliError> {
    let odb_type: OdbType = spec
        .odb_type
        .parse()
        .map_err(|error: muster_proto::UnknownName| CliError::Usage(error.to_string()))?;
    Ok(v1::OdbSettings {
        odb_type: odb_type as i32,
        host: spec.host.clone(),
        port: u32::from(spec.port.unwrap_or(0)),
        user: spec.user.clone(),
        db_name: spec.db_name.clone(),
        postgresql_schema: spec.postgresql_schema.clone(),
    })
}

/// `muster apply -f FILE [--dry-run]`.
pub(super) async fn apply_command(
    path: PathBuf,
    dry_run: bool,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let file = read_file(&path)?;
    let name = file.cluster.name.clone();
    let create_request = v1::CreateClusterRequest {
        name: name.clone(),
        description: file.cluster.description.clone(),
        odb: Some(odb_settings(&file.cluster.odb)?),
        odb_password: String::new(),
    };
    let mut connection = connect(connection_args).await?;
    let existing = match connection
        .client
        .get_cluster(v1::GetClusterRequest {
            name: name.clone(),
            with_content: false,
        })
        .await
    {
        Ok(response) => response.into_inner().cluster,
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => return Err(connection.status_error(&status)),
    };
    if let Some(existing) = &existing {
        let differences = cluster_differences(&create_request, existing);
        if !differences.is_empty() {
            return Err(CliError::Exists(format!(
                "cluster '{name}' exists with other settings: {}; apply does not change a \
                 cluster's ODB or description",
                differences.join(", ")
            )));
        }
    }
    let hosts = list_hosts(&mut connection).await?;
    let current = match existing {
        Some(_) => current_of(&list_components(&mut connection, Some(&name)).await?),
        None => Vec::new(),
    };
    let wanted = wanted(&file, &hosts, &current).map_err(|error| invalid(&path, error))?;
    let steps = plan(&wanted, &current).map_err(|error| invalid(&path, error))?;
    // The services: read and checked before anything changes; set when their revision differs.
    let services = match &file.services {
        Some(spec) => {
            let files = services_of(&path, spec)?;
            let revision = muster_proto::services::revision(&files);
            let current_revision = existing
                .as_ref()
                .map(|cluster| cluster.services_revision.clone())
                .unwrap_or_default();
            Some((files, revision, current_revision))
        }
        None => None,
    };
    let services_change = services
        .as_ref()
        .filter(|(_, revision, current)| revision != current);
    // The Python dependencies likewise, compared by revision.
    let python = match &file.python {
        Some(spec) => {
            let (requirements, wheels) = python_of(&path, spec)?;
            let revision = muster_proto::python::revision(&requirements, &wheels);
            let current_revision = existing
                .as_ref()
                .map(|cluster| cluster.python_revision.clone())
                .unwrap_or_default();
            Some((requirements, wheels, revision, current_revision))
        }
        None => None,
    };
    let python_change = python
        .as_ref()
        .filter(|(_, _, revision, current)| revision != current);
    // The configuration: read and checked (every placeholder with a value) before anything
    // changes. Only the coordinator can compare the values; it keeps a revision it has.
    let config = match &file.config {
        Some(spec) => Some(config_of(&path, spec)?),
        None => None,
    };
    // The user-config files likewise (secrets: only the coordinator can compare them).
    let user_conf = match &file.user_conf {
        Some(spec) => Some(user_conf_of(&path, spec)?),
        None => None,
    };
    // The server, scheduler and dashboard settings: checked before anything changes; what
    // differs is set, what the file no longer has unset.
    let mut settings = Vec::new();
    for (role, table) in [
        (Role::Server, &file.server_settings),
        (Role::Scheduler, &file.scheduler_settings),
        (Role::WebAdmin, &file.web_admin_settings),
    ] {
        let Some(table) = table else { continue };
        let current = existing
            .as_ref()
            .map(|cluster| match role {
                Role::Server => &cluster.server_settings,
                Role::Scheduler => &cluster.scheduler_settings,
                _ => &cluster.web_admin_settings,
            })
            .map(|settings| settings.clone().into_iter().collect())
            .unwrap_or_default();
        let wanted = settings_of(role, table).map_err(|error| invalid(&path, error))?;
        settings.push(SettingsChange::between(role, current, &wanted));
    }
    let settings_change = settings
        .iter()
        .find(|change| change.role == Role::Server && change.changes());
    // The rollout strategy: checked before anything changes; set when it differs.
    let current_strategy = existing
        .as_ref()
        .and_then(|cluster| cluster.rollout_strategy)
        .map(muster_proto::rollout::Strategy::from)
        .unwrap_or_default();
    let rollout_change = match &file.rollout {
        Some(spec) => {
            let wanted = rollout_of(spec).map_err(|error| invalid(&path, error))?;
            (wanted != current_strategy).then_some(wanted)
        }
        None => None,
    };
    // A server found the ODB empty: applying the file rebuilds the cluster on it.
    let rebuild = existing.as_ref().is_some_and(|cluster| cluster.odb_empty);
    let changes = usize::from(rebuild)
        + steps
            .iter()
            .filter(|step| !matches!(step, Step::Keep(_)))
            .count()
        + usize::from(services_change.is_some())
        + usize::from(python_change.is_some())
        + settings.iter().filter(|change| change.changes()).count()
        + usize::from(rollout_change.is_some())
        + usize::from(config.is_some())
        + usize::from(user_conf.is_some());

    let mut lines = Vec::new();
    lines.push(match &existing {
        Some(_) => format!("= cluster {name}"),
        None => format!("+ cluster {name} (ODB {})", file.cluster.odb.odb_type),
    });
    if rebuild {
        lines.push(format!(
            "! rebuild cluster {name} on its ODB, which a server finds empty: every server, the \
             scheduler and the dashboard are created again"
        ));
    }
    lines.extend(steps.iter().map(Step::to_string));
    if let Some((files, env)) = &config {
        let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
        lines.push(format!(
            "~ config {} file(s): {}; {} env value(s) (unchanged if the coordinator has them)",
            files.len(),
            names.join(", "),
            env.len()
        ));
    }
    if let Some(files) = &user_conf {
        let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
        lines.push(format!(
            "~ user_conf {} file(s): {} (unchanged if the coordinator has them)",
            files.len(),
            names.join(", ")
        ));
    }
    if let Some((requirements, wheels, revision, current)) = &python {
        let short = muster_proto::services::short(revision);
        let names = muster_proto::python::checked_requirements(requirements).unwrap_or_default();
        let what = muster_proto::python::summary(&names, wheels);
        lines.push(if revision == current {
            format!("= python {short}")
        } else if current.is_empty() {
            format!("+ python {short} ({what})")
        } else {
            format!(
                "~ python {} -> {short} ({what})",
                muster_proto::services::short(current)
            )
        });
    }
    if let Some(wanted) = &rollout_change {
        lines.push(format!(
            "~ rollout strategy: {} -> {}",
            current_strategy.shown(),
            wanted.shown()
        ));
    } else if file.rollout.is_some() {
        lines.push(format!("= rollout strategy ({})", current_strategy.shown()));
    }
    for change in &settings {
        lines.push(change.planned(rollout_change.unwrap_or(current_strategy).max_unavailable));
    }
    if let Some((files, revision, current)) = &services {
        let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
        let short = muster_proto::services::short(revision);
        lines.push(if revision == current {
            format!("= services {short}")
        } else if current.is_empty() {
            format!(
                "+ services {short} ({} file(s): {})",
                files.len(),
                names.join(", ")
            )
        } else {
            format!(
                "~ services {} -> {short} ({} file(s): {})",
                muster_proto::services::short(current),
                files.len(),
                names.join(", ")
            )
        });
    }
    let summary = format!(
        "{}{changes} change(s) to cluster {name}{}",
        if dry_run { "would make " } else { "" },
        if existing.is_none() {
            ", which is created"
        } else {
            ""
        }
    );
    if dry_run {
        if json {
            write_json(
                out,
                &serde_json::json!({"cluster": name, "dry_run": true, "plan": lines}),
            )?;
        } else {
            for line in &lines {
                writeln!(out, "{line}")?;
            }
            writeln!(out, "{summary} (dry run: nothing changed)")?;
        }
        return Ok(());
    }

    // Carry it out: the cluster, creates, settings, then removals.
    let enrolled: Vec<String> = hosts.iter().map(|host| host.name.clone()).collect();
    let mut done = Vec::new();
    let mut say = |line: String, out: &mut dyn std::io::Write| -> Result<(), CliError> {
        if !json {
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        done.push(line);
        Ok(())
    };
    if existing.is_none() {
        let mut request = create_request;
        if let Some(password_file) = &file.cluster.odb.password_file {
            request.odb_password = read_password_file(&named_file(&path, password_file)?)?;
        }
        connection
            .client
            .create_cluster(request)
            .await
            .answer(&connection)?;
        say(format!("created cluster {name}"), out)?;
    }
    if rebuild {
        let answer = connection
            .client
            .rebuild_cluster_odb(v1::RebuildClusterOdbRequest {
                cluster: name.clone(),
            })
            .await
            .answer(&connection)?;
        say(
            format!(
                "rebuilding cluster {name} on its empty ODB (generation {}): `zato create odb` \
                 and `create cluster` again, then its servers (one first), scheduler and \
                 dashboard; `muster status` shows how far",
                answer.odb_epoch
            ),
            out,
        )?;
    }
    for step in &steps {
        if let Step::Create(want) = step {
            let created = connection
                .client
                .create_component(v1::CreateComponentRequest {
                    cluster: name.clone(),
                    role: want.role as i32,
                    host: want.host.clone(),
                    name: want.name.clone().unwrap_or_default(),
                    port: u32::from(want.port.unwrap_or(0)),
                    load_balancer: want.settings.clone(),
                })
                .await
                .answer(&connection)?
                .component
                .unwrap_or_default();
            say(
                format!(
                    "created {} {} on {} port {}",
                    want.role, created.name, created.host, created.port
                ),
                out,
            )?;
            if let Some(warning) = not_enrolled_warning(&want.host, &enrolled) {
                eprintln!("warning: {warning}");
            }
        }
    }
    for step in &steps {
        if let Step::Configure(have, settings, changes) = step {
            connection
                .client
                .configure_load_balancer(v1::ConfigureLoadBalancerRequest {
                    cluster: name.clone(),
                    host: have.host.clone(),
                    name: have.name.clone(),
                    settings: Some(settings.clone()),
                })
                .await
                .answer(&connection)?;
            say(
                format!(
                    "configured {} {} on {}: {}",
                    have.role,
                    have.name,
                    have.host,
                    changes.join(", ")
                ),
                out,
            )?;
        }
    }
    // Before the Python dependencies and the server settings, so that their rollouts follow
    // the file's strategy.
    if let Some(wanted) = rollout_change {
        connection
            .client
            .configure_rollout(v1::ConfigureRolloutRequest {
                cluster: name.clone(),
                healthy_deadline_seconds: Some(wanted.healthy_deadline_seconds),
                auto_revert: Some(wanted.auto_revert),
                min_healthy_time_seconds: Some(wanted.min_healthy_time_seconds),
                max_unavailable: Some(wanted.max_unavailable),
            })
            .await
            .answer(&connection)?;
        say(format!("set the rollout strategy: {}", wanted.shown()), out)?;
    }
    // Before the services, which import them.
    if let Some((requirements, wheels, revision, _)) = python_change {
        send_python(&mut connection, &name, requirements, wheels).await?;
        say(
            format!(
                "set Python dependencies {} ({}); running servers restart {} to load them",
                muster_proto::services::short(revision),
                muster_proto::python::summary(
                    &muster_proto::python::checked_requirements(requirements).unwrap_or_default(),
                    wheels
                ),
                at_a_time(rollout_change.unwrap_or(current_strategy).max_unavailable)
            ),
            out,
        )?;
    }
    if let Some(SettingsChange { set, unset, .. }) = settings_change {
        let configured = connection
            .client
            .configure_servers(v1::ConfigureServersRequest {
                cluster: name.clone(),
                set: set.clone().into_iter().collect(),
                unset: unset.clone(),
            })
            .await
            .answer(&connection)?;
        say(
            format!(
                "set server settings ({}); {}",
                configured.settings.len(),
                if configured.servers.is_empty() {
                    "each server starts with them".to_owned()
                } else {
                    format!(
                        "servers {} restart {} (restart epoch {})",
                        configured.servers.join(", "),
                        at_a_time(configured.max_unavailable),
                        configured.restart_epoch
                    )
                }
            ),
            out,
        )?;
    }
    for change in settings
        .iter()
        .filter(|change| change.role != Role::Server && change.changes())
    {
        let configured = connection
            .client
            .configure_role(v1::ConfigureRoleRequest {
                cluster: name.clone(),
                role: change.role as i32,
                set: change.set.clone().into_iter().collect(),
                unset: change.unset.clone(),
            })
            .await
            .answer(&connection)?;
        say(
            format!(
                "set {} settings ({}); {}",
                change.role,
                configured.settings.len(),
                if configured.components.is_empty() {
                    format!("each {} starts with them", change.role)
                } else {
                    format!(
                        "{} restart{} at the role's turn (restart epoch {})",
                        configured.components.join(", "),
                        if configured.components.len() == 1 {
                            "s"
                        } else {
                            ""
                        },
                        configured.restart_epoch
                    )
                }
            ),
            out,
        )?;
    }
    if let Some((files, revision, _)) = services_change {
        connection
            .client
            .set_services(v1::SetServicesRequest {
                cluster: name.clone(),
                files: files.clone(),
            })
            .await
            .answer(&connection)?;
        say(
            format!(
                "set services {} ({} file(s))",
                muster_proto::services::short(revision),
                files.len()
            ),
            out,
        )?;
    }
    // After the services, which the configuration's channels name.
    if let Some((files, env)) = config {
        let count = files.len();
        let answer = connection
            .client
            .set_config(v1::SetConfigRequest {
                cluster: name.clone(),
                files,
                env: env.into_iter().collect(),
            })
            .await
            .answer(&connection)?;
        let short = muster_proto::services::short(&answer.revision).to_owned();
        if answer.changed {
            say(format!("set configuration {short} ({count} file(s))"), out)?;
        }
    }
    if let Some(files) = user_conf {
        let count = files.len();
        let answer = connection
            .client
            .set_user_conf(v1::SetUserConfRequest {
                cluster: name.clone(),
                files,
            })
            .await
            .answer(&connection)?;
        let short = muster_proto::services::short(&answer.revision).to_owned();
        if answer.changed {
            say(
                format!("set user-config files {short} ({count} file(s))"),
                out,
            )?;
        }
    }
    for step in &steps {
        if let Step::Remove(have) = step {
            connection
                .client
                .delete_component(v1::DeleteComponentRequest {
                    cluster: name.clone(),
                    role: have.role as i32,
                    host: have.host.clone(),
                    name: have.name.clone(),
                })
                .await
                .answer(&connection)?;
            say(
                format!("removed {} {} from {}", have.role, have.name, have.host),
                out,
            )?;
        }
    }
    if json {
        write_json(
            out,
            &serde_json::json!({"cluster": name, "dry_run": false, "plan": lines, "done": done}),
        )?;
    } else if done.is_empty() {
        writeln!(out, "cluster {name} is as the file describes it; unchanged")?;
    } else {
        writeln!(out, "{summary}")?;
    }
    Ok(())
}

/// `muster get cluster NAME`: the cluster as a file `apply` takes (TOML; `-o json` the same as
/// JSON). Hosts and names are written out; the ODB password is not.
pub(super) async fn get_cluster_command(
    name: String,
    dir: Option<PathBuf>,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate::name("cluster name", &name)?;
    let mut connection = connect(connection_args).await?;
    let cluster = connection
        .client
        .get_cluster(v1::GetClusterRequest {
            name: name.clone(),
            with_content: dir.is_some(),
        })
        .await
        .answer(&connection)?
        .cluster
        .unwrap_or_default();
    let components = list_components(&mut connection, Some(&name)).await?;
    if let Some(dir) = dir {
        let written = export::write_directory(&mut connection, &cluster, &components, &dir).await?;
        if json {
            return write_json(
                out,
                &serde_json::json!({"cluster": name, "dir": dir, "files": written}),
            );
        }
        writeln!(
            out,
            "wrote cluster {name} to {}: {}",
            dir.display(),
            written.join(", ")
        )?;
        if !cluster.config_env_names.is_empty() {
            writeln!(
                out,
                "its env values are secrets and are not written: make {} from env.ini.example \
                 before `muster apply`",
                dir.join("config/env.ini").display()
            )?;
        }
        if !cluster.user_conf_names.is_empty() {
            writeln!(
                out,
                "its user-config files are secrets and are not written: put yours in {} ({}) \
                 before `muster apply`",
                dir.join("user-conf").display(),
                cluster.user_conf_names.join(", ")
            )?;
        }
        return Ok(());
    }
    let file = file_of(&cluster, &components);
    if json {
        return write_json(out, &file);
    }
    let text =
        toml::to_string(&file).map_err(|error| CliError::Output(std::io::Error::other(error)))?;
    writeln!(
        out,
        "# Cluster {name} as `muster get cluster {name}` wrote it; `muster apply -f FILE` takes it."
    )?;
    if cluster.has_odb_password {
        writeln!(
            out,
            "# Its ODB password is not written here: to create the cluster elsewhere, add\n\
             # password_file = \"PATH\" under [cluster.odb]."
        )?;
    }
    write!(out, "{text}")?;
    if !cluster.services_revision.is_empty() {
        let names: Vec<&str> = cluster
            .services
            .iter()
            .map(|file| file.name.as_str())
            .collect();
        writeln!(
            out,
            "\n# Its services: revision {} ({}). Their files are not written here, and a file\n\
             # without [services] leaves them as they are; to carry them, add\n\
             # [services]\n# paths = [\"DIRECTORY\"]",
            muster_proto::services::short(&cluster.services_revision),
            names.join(", ")
        )?;
    }
    if !cluster.python_revision.is_empty() {
        writeln!(
            out,
            "\n# Its Python dependencies: revision {} ({}). Not written here (`muster get cluster\n\
             # {} --dir DIR` writes them); a file without [python] leaves them as they are. Their\n\
             # requirements:",
            muster_proto::services::short(&cluster.python_revision),
            muster_proto::python::summary(
                &muster_proto::python::checked_requirements(&cluster.python_requirements)
                    .unwrap_or_default(),
                &cluster.python_wheels
            ),
            cluster.name
        )?;
        for line in cluster.python_requirements.lines() {
            writeln!(out, "#   {line}")?;
        }
    }
    if !cluster.config_revision.is_empty() {
        let names: Vec<&str> = cluster
            .config_files
            .iter()
            .map(|file| file.name.as_str())
            .collect();
        writeln!(
            out,
            "\n# Its configuration: revision {} ({}; env values {}). Not written here either; a\n\
             # file without [config] leaves it as it is.",
            muster_proto::services::short(&cluster.config_revision),
            names.join(", "),
            cluster.config_env_names.join(", ")
        )?;
    }
    if !cluster.user_conf_revision.is_empty() {
        writeln!(
            out,
            "\n# Its user-config files: revision {} ({}). Secrets, never written; a file without\n\
             # [user_conf] leaves them as they are.",
            muster_proto::services::short(&cluster.user_conf_revision),
            cluster.user_conf_names.join(", ")
        )?;
    }
    Ok(())
}
