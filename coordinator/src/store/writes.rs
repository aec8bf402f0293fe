//! The one way the APIs change the store (as quickwit wraps its metastore): [`Writes`] is a
//! [`Store`] around the real one whose every write runs again while it only collided with another
//! transaction ([`retry_transient`]) and, once it committed a change, wakes the watches of the
//! hosts' desired states ([`Fanout::committed`]). The admin and agent APIs hold only this one, so
//! no handler can forget either. Reads pass through.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use muster_proto::v1::{self, Role};

use super::*;
use crate::fanout::Fanout;

/// A [`Store`] whose writes are retried when they collide and wake the desired-state watches.
pub struct Writes {
    inner: Arc<dyn Store>,
    fanout: Arc<Fanout>,
}

impl Writes {
    pub fn new(inner: Arc<dyn Store>, fanout: Arc<Fanout>) -> Writes {
        Writes { inner, fanout }
    }

    /// Runs `operation` (again while it collides) and, when `moved` says its result changed
    /// something, wakes the watches.
    async fn write<T, F, Fut>(
        &self,
        operation: F,
        moved: impl FnOnce(&T) -> bool,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let result = retry_transient(operation).await?;
        if moved(&result) {
            self.fanout.committed();
        }
        Ok(result)
    }
}

impl fmt::Debug for Writes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Writes")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Every committed write of this kind may move a host's generation.
fn always<T>(_: &T) -> bool {
    true
}

/// A `(revision, changed)` write moved something only when it changed the revision.
fn changed(result: &(String, bool)) -> bool {
    result.1
}

#[async_trait]
impl Store for Writes {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        self.inner.probe_write().await
    }

    async fn create_cluster(&self, new: NewCluster, actor: &Actor) -> Result<Cluster, StoreError> {
        self.write(|| self.inner.create_cluster(new.clone(), actor), always)
            .await
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>, StoreError> {
        self.inner.list_clusters().await
    }

    async fn get_cluster(&self, name: &str) -> Result<Cluster, StoreError> {
        self.inner.get_cluster(name).await
    }

    async fn cluster_secrets(&self, name: &str) -> Result<ClusterSecrets, StoreError> {
        self.inner.cluster_secrets(name).await
    }

    async fn delete_cluster(&self, name: &str, actor: &Actor) -> Result<(), StoreError> {
        self.write(|| self.inner.delete_cluster(name, actor), always)
            .await
    }

    async fn create_join_token(
        &self,
        new: NewJoinToken,
        actor: &Actor,
    ) -> Result<JoinToken, StoreError> {
        self.write(|| self.inner.create_join_token(new.clone(), actor), always)
            .await
    }

    async fn list_join_tokens(&self, cluster: Option<&str>) -> Result<Vec<JoinToken>, StoreError> {
        self.inner.list_join_tokens(cluster).await
    }

    async fn revoke_join_token(&self, id: &str, actor: &Actor) -> Result<JoinToken, StoreError> {
        self.write(|| self.inner.revoke_join_token(id, actor), always)
            .await
    }

    async fn redeem_join_token(
        &self,
        id: &str,
        secret_hash: &str,
        now_ms: i64,
    ) -> Result<JoinToken, StoreError> {
        self.write(
            || self.inner.redeem_join_token(id, secret_hash, now_ms),
            always,
        )
        .await
    }

    async fn add_admin_token(
        &self,
        id: &str,
        token_hash: &str,
        description: &str,
    ) -> Result<(), StoreError> {
        self.write(
            || self.inner.add_admin_token(id, token_hash, description),
            always,
        )
        .await
    }

    async fn find_admin_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        self.inner.find_admin_token(token_hash).await
    }

    async fn create_host(&self, new: NewHost, actor: &Actor) -> Result<Host, StoreError> {
        self.write(|| self.inner.create_host(new.clone(), actor), always)
            .await
    }

    async fn list_hosts(&self) -> Result<Vec<Host>, StoreError> {
        self.inner.list_hosts().await
    }

    async fn get_host(&self, name: &str) -> Result<Host, StoreError> {
        self.inner.get_host(name).await
    }

    async fn create_assignment(
        &self,
        new: NewAssignment,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        self.write(|| self.inner.create_assignment(new.clone(), actor), always)
            .await
    }

    async fn delete_assignment(
        &self,
        cluster: &str,
        role: Role,
        host: &str,
        name: Option<&str>,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        self.write(
            || {
                self.inner
                    .delete_assignment(cluster, role, host, name, actor)
            },
            always,
        )
        .await
    }

    async fn set_services(
        &self,
        cluster: &str,
        files: &[v1::ServiceFile],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        self.write(|| self.inner.set_services(cluster, files, actor), changed)
            .await
    }

    async fn set_config(
        &self,
        cluster: &str,
        files: &[v1::EnmasseFile],
        env: &BTreeMap<String, String>,
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        self.write(
            || self.inner.set_config(cluster, files, env, actor),
            changed,
        )
        .await
    }

    async fn cluster_config(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<(Vec<v1::EnmasseFile>, BTreeMap<String, String>), StoreError> {
        self.inner.cluster_config(cluster, with_content).await
    }

    async fn set_python(
        &self,
        cluster: &str,
        requirements: &str,
        wheels: &[v1::PythonWheel],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        self.write(
            || self.inner.set_python(cluster, requirements, wheels, actor),
            changed,
        )
        .await
    }

    async fn cluster_python(
        &self,
        cluster: &str,
    ) -> Result<(String, Vec<v1::PythonWheel>), StoreError> {
        self.inner.cluster_python(cluster).await
    }

    async fn python_wheel(
        &self,
        cluster: &str,
        sha256: &str,
    ) -> Result<Option<v1::PythonWheel>, StoreError> {
        self.inner.python_wheel(cluster, sha256).await
    }

    async fn restart_servers(
        &self,
        cluster: &str,
        actor: &Actor,
    ) -> Result<(u64, Vec<String>), StoreError> {
        self.write(|| self.inner.restart_servers(cluster, actor), always)
            .await
    }

    async fn restart_roles(
        &self,
        cluster: &str,
        roles: &[Role],
        actor: &Actor,
    ) -> Result<RollingRestart, StoreError> {
        self.write(|| self.inner.restart_roles(cluster, roles, actor), always)
            .await
    }

    async fn configure_servers(
        &self,
        cluster: &str,
        set: &BTreeMap<String, String>,
        unset: &[String],
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError> {
        self.write(
            || self.inner.configure_servers(cluster, set, unset, actor),
            |configured| configured.changed,
        )
        .await
    }

    async fn configure_role(
        &self,
        cluster: &str,
        role: Role,
        set: &BTreeMap<String, String>,
        unset: &[String],
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError> {
        self.write(
            || self.inner.configure_role(cluster, role, set, unset, actor),
            |configured| configured.changed,
        )
        .await
    }

    async fn undo_server_settings(
        &self,
        cluster: &str,
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError> {
        self.write(|| self.inner.undo_server_settings(cluster, actor), always)
            .await
    }

    async fn configure_rollout(
        &self,
        cluster: &str,
        change: RolloutChange,
        actor: &Actor,
    ) -> Result<RolloutConfigured, StoreError> {
        self.write(
            || self.inner.configure_rollout(cluster, change, actor),
            |configured| configured.changed,
        )
        .await
    }

    async fn stop_failed_rollouts(&self, now_ms: i64) -> Result<Vec<StoppedRollout>, StoreError> {
        self.write(
            || self.inner.stop_failed_rollouts(now_ms),
            |stopped| !stopped.is_empty(),
        )
        .await
    }

    async fn release_held_servers(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        self.write(
            || self.inner.release_held_servers(now_ms),
            |released| !released.is_empty(),
        )
        .await
    }

    async fn pause_rollout(
        &self,
        cluster: &str,
        paused: bool,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        self.write(
            || self.inner.pause_rollout(cluster, paused, actor),
            |changed| *changed,
        )
        .await
    }

    async fn rebuild_odb(&self, cluster: &str, actor: &Actor) -> Result<u64, StoreError> {
        self.write(|| self.inner.rebuild_odb(cluster, actor), always)
            .await
    }

    async fn set_user_conf(
        &self,
        cluster: &str,
        files: &[v1::UserConfFile],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        self.write(|| self.inner.set_user_conf(cluster, files, actor), changed)
            .await
    }

    async fn cluster_user_conf(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<Vec<v1::UserConfFile>, StoreError> {
        self.inner.cluster_user_conf(cluster, with_content).await
    }

    async fn cluster_services(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<Vec<v1::ServiceFile>, StoreError> {
        self.inner.cluster_services(cluster, with_content).await
    }

    async fn configure_load_balancer(
        &self,
        cluster: &str,
        host: &str,
        name: Option<&str>,
        changes: &v1::LoadBalancerSettings,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        self.write(
            || {
                self.inner
                    .configure_load_balancer(cluster, host, name, changes, actor)
            },
            always,
        )
        .await
    }

    async fn list_assignments(&self, cluster: Option<&str>) -> Result<Vec<Assignment>, StoreError> {
        self.inner.list_assignments(cluster).await
    }

    async fn list_bootstrap(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<BootstrapState>, StoreError> {
        self.inner.list_bootstrap(cluster).await
    }

    async fn enroll_host(
        &self,
        token_id: &str,
        secret_hash: &str,
        new: NewHost,
        requested: &[Role],
    ) -> Result<(Host, JoinToken), StoreError> {
        self.write(
            || {
                self.inner
                    .enroll_host(token_id, secret_hash, new.clone(), requested)
            },
            always,
        )
        .await
    }

    async fn get_host_by_id(&self, id: &str) -> Result<Host, StoreError> {
        self.inner.get_host_by_id(id).await
    }

    async fn host_generation(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.inner.host_generation(id).await
    }

    async fn plan_inputs(&self, host_id: &str) -> Result<PlanInputs, StoreError> {
        self.inner.plan_inputs(host_id).await
    }

    /// Most reports change nothing (a heartbeat): only one that was written wakes the watches.
    async fn record_status(
        &self,
        host_id: &str,
        report: StatusReport,
    ) -> Result<StatusRecorded, StoreError> {
        self.write(
            || self.inner.record_status(host_id, report.clone()),
            |recorded: &StatusRecorded| recorded.written,
        )
        .await
    }

    /// Last-seen times move no host's desired state.
    async fn record_liveness(&self, seen: &[(String, i64)]) -> Result<Vec<String>, StoreError> {
        self.write(|| self.inner.record_liveness(seen), |_| false)
            .await
    }

    async fn host_generations(
        &self,
        changed_since_ms: Option<i64>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.host_generations(changed_since_ms).await
    }

    /// A host marked down can move the scheduler off its servers.
    async fn mark_stale_hosts_down(
        &self,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.write(
            || self.inner.mark_stale_hosts_down(now_ms, ttl_ms),
            |down: &Vec<String>| !down.is_empty(),
        )
        .await
    }

    async fn admit_host(
        &self,
        name: &str,
        cluster: &str,
        actor: &Actor,
    ) -> Result<Host, StoreError> {
        self.write(|| self.inner.admit_host(name, cluster, actor), always)
            .await
    }

    async fn set_host_drained(
        &self,
        name: &str,
        drained: bool,
        actor: &Actor,
    ) -> Result<Host, StoreError> {
        self.write(|| self.inner.set_host_drained(name, drained, actor), always)
            .await
    }

    /// The removed host's own watches end at the next full read of the generations.
    async fn remove_host(&self, name: &str, force: bool, actor: &Actor) -> Result<(), StoreError> {
        self.write(|| self.inner.remove_host(name, force, actor), always)
            .await?;
        self.fanout.reconcile_soon();
        Ok(())
    }

    async fn list_events(
        &self,
        cluster: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.list_events(cluster, after, limit).await
    }

    async fn prune_events(&self, older_than_ms: i64, keep: u64) -> Result<u64, StoreError> {
        self.write(|| self.inner.prune_events(older_than_ms, keep), |_| false)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_proto::v1::OdbType;

    #[tokio::test]
    async fn a_write_that_changed_something_wakes_the_watches_and_one_that_did_not_does_not() {
        let directory = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::parse(&format!(
            "sqlite://{}",
            directory.path().join("muster.db").display()
        ))
        .unwrap();
        let store = SqlStore::connect(&url, crate::secrets::SecretBox::new(&[7; 32]).unwrap())
            .await
            .unwrap();
        let fanout = Fanout::new();
        let writes = Writes::new(Arc::new(store), fanout.clone());
        let actor = Actor("test".to_owned());
        writes
            .create_cluster(
                NewCluster {
                    name: "prod".to_owned(),
                    description: String::new(),
                    odb: OdbSettings {
                        odb_type: OdbType::Sqlite,
                        host: String::new(),
                        port: 0,
                        user: String::new(),
                        db_name: String::new(),
                        postgresql_schema: String::new(),
                    },
                    secrets: ClusterSecrets {
                        odb_password: String::new(),
                        secret_key: "k".to_owned(),
                        jwt_secret: "j".to_owned(),
                        admin_invoke_password: "a".to_owned(),
                    },
                },
                &actor,
            )
            .await
            .unwrap();
        assert!(fanout.take_committed(), "a committed write wakes them");
        assert!(!fanout.take_committed(), "once");
        let files = [v1::ServiceFile {
            name: "orders.py".to_owned(),
            content: "x = 1\n".to_owned(),
            ..Default::default()
        }];
        let (_, changed) = writes.set_services("prod", &files, &actor).await.unwrap();
        assert!(changed && fanout.take_committed());
        let (_, changed) = writes.set_services("prod", &files, &actor).await.unwrap();
        assert!(
            !changed && !fanout.take_committed(),
            "the same revision moves nothing"
        );
        let refused = writes.set_services("other", &files, &actor).await;
        assert!(
            refused.is_err() && !fanout.take_committed(),
            "a failed write neither"
        );
        assert_eq!(
            writes.list_clusters().await.unwrap().len(),
            1,
            "reads pass through"
        );
    }
}
