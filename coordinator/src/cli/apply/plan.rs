//! From what the file asks and what the coordinator holds to the steps between them.

use super::*;

/// A component the file asks for, on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wanted {
    pub(super) role: Role,
    pub(super) host: String,
    pub(super) name: Option<String>,
    pub(super) port: Option<u16>,
    /// A load balancer's settings as given (zero/empty: the default).
    pub(super) settings: Option<v1::LoadBalancerSettings>,
}

/// A component as the coordinator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Current {
    pub(super) role: Role,
    pub(super) name: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) settings: Option<v1::LoadBalancerSettings>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Create(Wanted),
    /// A load balancer's settings to change: the current one and the fields to set.
    Configure(Current, v1::LoadBalancerSettings, Vec<String>),
    Remove(Current),
    Keep(Current),
}

impl std::fmt::Display for Step {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Create(wanted) => {
                write!(formatter, "+ {}", wanted.role)?;
                if let Some(name) = &wanted.name {
                    write!(formatter, " {name}")?;
                }
                write!(formatter, " on {}", wanted.host)?;
                if let Some(port) = wanted.port {
                    write!(formatter, " port {port}")?;
                }
                Ok(())
            }
            Step::Configure(current, _, changes) => write!(
                formatter,
                "~ {} {} on {}: {}",
                current.role,
                current.name,
                current.host,
                changes.join(", ")
            ),
            Step::Remove(current) => write!(
                formatter,
                "- {} {} on {} port {}",
                current.role, current.name, current.host, current.port
            ),
            Step::Keep(current) => write!(
                formatter,
                "= {} {} on {} port {}",
                current.role, current.name, current.host, current.port
            ),
        }
    }
}

/// The components the file asks for, each on one host: selectors are matched against the labels
/// of the cluster's own enrolled hosts (those that enrolled with one of its join tokens, or that an
/// admin admitted to it: a host of another cluster is never chosen, whatever its labels),
/// preferring hosts that already have a component of that role (so a
/// growing count adds, never moves), then by name.
pub(super) fn wanted(
    file: &ClusterFile,
    hosts: &[v1::Host],
    current: &[Current],
) -> Result<Vec<Wanted>, String> {
    let mut wanted = Vec::new();
    for (role, spec) in specs(file) {
        let settings = (role == Role::LoadBalancer)
            .then(|| balancer_settings(spec))
            .transpose()?;
        let chosen: Vec<String> = match (&spec.host, &spec.selector) {
            (Some(host), _) => vec![host.clone()],
            (None, Some(selector)) => {
                let count = spec.count.unwrap_or(1) as usize;
                let mut matching: Vec<&v1::Host> = hosts
                    .iter()
                    .filter(|host| {
                        !host.drained
                            && (host.cluster == file.cluster.name
                                || host.admitted.contains(&file.cluster.name))
                    })
                    .filter(|host| {
                        selector
                            .iter()
                            .all(|(key, value)| host.labels.get(key) == Some(value))
                    })
                    .collect();
                matching.sort_by_key(|host| {
                    let has_one = current
                        .iter()
                        .any(|component| component.role == role && component.host == host.name);
                    (!has_one, host.name.clone())
                });
                if matching.len() < count {
                    let labels: Vec<String> = selector
                        .iter()
                        .map(|(key, value)| format!("{key}={value}"))
                        .collect();
                    return Err(format!(
                        "the {role} selector {{{}}} asks for {count} host(s) and {} enrolled, \
                         undrained host(s) of cluster {} match{}",
                        labels.join(", "),
                        matching.len(),
                        file.cluster.name,
                        if matching.is_empty() {
                            String::new()
                        } else {
                            format!(
                                ": {}",
                                matching
                                    .iter()
                                    .map(|host| host.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    ));
                }
                matching
                    .into_iter()
                    .take(count)
                    .map(|host| host.name.clone())
                    .collect()
            }
            (None, None) => Vec::new(),
        };
        for host in chosen {
            wanted.push(Wanted {
                role,
                host,
                name: spec.name.clone(),
                port: spec.port,
                settings: settings.clone(),
            });
        }
    }
    Ok(wanted)
}

/// The steps from `current` to `wanted`. A wanted component matches a current one of its role
/// on its host (by name when it gives one); a port that differs is refused, not changed: Zato
/// does not move a component to another port in place.
pub(super) fn plan(wanted: &[Wanted], current: &[Current]) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut matched = vec![false; current.len()];
    for want in wanted {
        let found = current.iter().enumerate().find(|(index, have)| {
            !matched[*index]
                && have.role == want.role
                && have.host == want.host
                && want.name.as_ref().is_none_or(|name| name == &have.name)
        });
        let Some((index, have)) = found else {
            if let Some(name) = &want.name
                && let Some(elsewhere) = current
                    .iter()
                    .find(|have| have.role == want.role && &have.name == name)
            {
                return Err(format!(
                    "{} {name} runs on {}, the file puts it on {}: a component is not moved; \
                     give the new one another name (the old one is then removed)",
                    want.role, elsewhere.host, want.host
                ));
            }
            steps.push(Step::Create(want.clone()));
            continue;
        };
        matched[index] = true;
        if let Some(port) = want.port
            && port != have.port
        {
            return Err(format!(
                "{} {} on {} has port {}, the file asks {port}: a port is not changed in place; \
                 give the component another name to replace it",
                have.role, have.name, have.host, have.port
            ));
        }
        match (&want.settings, &have.settings) {
            (Some(asked), Some(has)) => {
                let changes = setting_changes(asked, has);
                if changes.is_empty() {
                    steps.push(Step::Keep(have.clone()));
                } else {
                    steps.push(Step::Configure(have.clone(), asked.clone(), changes));
                }
            }
            _ => steps.push(Step::Keep(have.clone())),
        }
    }
    for (have, matched) in current.iter().zip(matched) {
        if !matched {
            steps.push(Step::Remove(have.clone()));
        }
    }
    Ok(steps)
}

/// What applying a `[ROLE_settings]` table changes of a role's settings.
pub(super) struct SettingsChange {
    pub(super) role: Role,
    /// The role's settings now.
    pub(super) current: std::collections::BTreeMap<String, String>,
    /// What differs from them.
    pub(super) set: std::collections::BTreeMap<String, String>,
    /// What the table no longer has.
    pub(super) unset: Vec<String>,
}

impl SettingsChange {
    /// From the role's settings now to those `wanted`.
    pub(super) fn between(
        role: Role,
        current: std::collections::BTreeMap<String, String>,
        wanted: &std::collections::BTreeMap<String, String>,
    ) -> SettingsChange {
        let set = wanted
            .iter()
            .filter(|(name, value)| current.get(*name) != Some(*value))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let unset = current
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        SettingsChange {
            role,
            current,
            set,
            unset,
        }
    }

    pub(super) fn changes(&self) -> bool {
        !self.set.is_empty() || !self.unset.is_empty()
    }

    /// Its line of the plan; a server's says how many restart at once (`max_unavailable`).
    pub(super) fn planned(&self, max_unavailable: u32) -> String {
        let what = match self.role {
            Role::Server => "server settings",
            Role::Scheduler => "scheduler settings",
            _ => "web-admin settings",
        };
        if !self.changes() {
            return format!("= {what} ({})", self.current.len());
        }
        let mut changed: Vec<String> = self
            .set
            .iter()
            .map(|(name, value)| match self.current.get(name) {
                Some(before) => format!("{name} {before} -> {value}"),
                None => format!("{name}={value}"),
            })
            .collect();
        changed.extend(self.unset.iter().map(|name| format!("{name} unset")));
        let restarts = match self.role {
            Role::Server => format!("the servers restart {}", at_a_time(max_unavailable)),
            Role::Scheduler => "the scheduler restarts at its turn".to_owned(),
            _ => "the dashboards restart at their turn".to_owned(),
        };
        format!("~ {what}: {} ({restarts})", changed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::apply::file::tests::FILE;

    fn host(name: &str, labels: &[(&str, &str)]) -> v1::Host {
        v1::Host {
            name: name.to_owned(),
            cluster: "prod".to_owned(),
            labels: labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            ..Default::default()
        }
    }

    fn current(role: Role, name: &str, host: &str, port: u16) -> Current {
        Current {
            role,
            name: name.to_owned(),
            host: host.to_owned(),
            port,
            settings: (role == Role::LoadBalancer).then(|| v1::LoadBalancerSettings {
                haproxy_bin: "haproxy".to_owned(),
                frontend_address: "0.0.0.0".to_owned(),
                check_inter_ms: 2000,
                check_rise: 2,
                check_fall: 2,
                connect_timeout_ms: 1000,
                server_timeout_ms: 60_000,
                retries: 3,
            }),
        }
    }

    #[test]
    fn a_selector_keeps_the_hosts_it_has_and_says_when_too_few_match() {
        let file: ClusterFile = toml::from_str(FILE).unwrap();
        let hosts = [
            host("app-1", &[("tier", "app")]),
            host("app-2", &[("tier", "app")]),
            host("app-3", &[("tier", "app")]),
            host("admin", &[]),
            host("lb", &[("tier", "edge")]),
        ];
        // app-3 has a server already: it stays chosen, app-1 joins it.
        let have = [current(Role::Server, "server1", "app-3", 17010)];
        let chosen: Vec<String> = wanted(&file, &hosts, &have)
            .unwrap()
            .into_iter()
            .filter(|want| want.role == Role::Server)
            .map(|want| want.host)
            .collect();
        assert_eq!(chosen, ["app-3", "app-1"]);
        let error = wanted(&file, &hosts[2..], &have).unwrap_err();
        assert_eq!(
            error,
            "the server selector {tier=app} asks for 2 host(s) and 1 enrolled, undrained host(s) \
             of cluster prod match: app-3"
        );
    }

    #[test]
    fn a_selector_never_chooses_a_host_of_another_cluster_whatever_its_labels() {
        let file: ClusterFile = toml::from_str(FILE).unwrap();
        let mut evil = host("evil2", &[("tier", "app")]);
        evil.cluster = "evilc".to_owned();
        let hosts = [host("app-1", &[("tier", "app")]), evil];
        let error = wanted(&file, &hosts, &[]).unwrap_err();
        assert!(
            error.contains("and 1 enrolled, undrained host(s) of cluster prod match: app-1"),
            "{error}"
        );
    }

    #[test]
    fn the_plan_creates_configures_removes_and_keeps() {
        let file: ClusterFile = toml::from_str(FILE).unwrap();
        let hosts = [
            host("app-1", &[("tier", "app")]),
            host("app-4", &[("tier", "app")]),
        ];
        let have = [
            current(Role::Server, "server1", "app-1", 17010),
            current(Role::Server, "server2", "app-2", 17010),
            current(Role::Scheduler, "scheduler", "admin", 31530),
            current(Role::LoadBalancer, "load-balancer", "lb", 11223),
        ];
        let steps = plan(&wanted(&file, &hosts, &have).unwrap(), &have).unwrap();
        let shown: Vec<String> = steps.iter().map(Step::to_string).collect();
        assert_eq!(
            shown,
            [
                "= server server1 on app-1 port 17010",
                "+ server on app-4",
                "= scheduler scheduler on admin port 31530",
                "~ load-balancer load-balancer on lb: check-inter 2000ms → 5000ms",
                "- server server2 on app-2 port 17010",
            ]
        );
        // Applied again, nothing is left to do.
        let after = [
            current(Role::Server, "server1", "app-1", 17010),
            current(Role::Server, "server3", "app-4", 17010),
            current(Role::Scheduler, "scheduler", "admin", 31530),
            Current {
                settings: Some(v1::LoadBalancerSettings {
                    check_inter_ms: 5000,
                    ..have[3].settings.clone().unwrap()
                }),
                ..have[3].clone()
            },
        ];
        let again = plan(&wanted(&file, &hosts, &after).unwrap(), &after).unwrap();
        assert!(
            again.iter().all(|step| matches!(step, Step::Keep(_))),
            "{again:?}"
        );
    }

    #[test]
    fn a_moved_name_or_a_changed_port_is_refused_not_carried_out() {
        let have = [current(Role::Server, "server1", "app-1", 17010)];
        let moved = Wanted {
            role: Role::Server,
            host: "app-2".to_owned(),
            name: Some("server1".to_owned()),
            port: None,
            settings: None,
        };
        assert!(
            plan(std::slice::from_ref(&moved), &have)
                .unwrap_err()
                .contains("is not moved")
        );
        let new_port = Wanted {
            host: "app-1".to_owned(),
            port: Some(17011),
            ..moved
        };
        assert!(
            plan(&[new_port], &have)
                .unwrap_err()
                .contains("not changed in place")
        );
    }
}
