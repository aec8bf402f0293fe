//! One behaviour suite for the store, run against SQLite, PostgreSQL and MariaDB.
//! Each test makes its own database (see `muster_testkit::TestDatabase`) and drops it afterwards.

mod assignments;
mod clusters;
mod fanout;
mod hosts;
mod scheduling;
mod tokens;

use std::collections::BTreeMap;

use muster_coordinator::planner;
use muster_coordinator::secrets::{self, SecretBox};
use muster_coordinator::store::{
    Actor, BootstrapReport, BootstrapTask, ClusterSecrets, ComponentStatus, DatabaseUrl, Host,
    NewAssignment, NewCluster, NewHost, NewJoinToken, OdbSettings, RollingRestart, RolloutChange,
    SqlStore, StatusReport, Store, StoreError, TokenRefusal, now_ms,
};
use muster_proto::v1::{self, BootstrapKind, OdbType, Role};
use muster_testkit::{Backend, TestDatabase};
use sqlx::Row;

use assignments::*;
use clusters::*;
use fanout::*;
use hosts::*;
use scheduling::*;
use tokens::*;

const KEY: [u8; 32] = [7; 32];

async fn open(database: &TestDatabase) -> SqlStore {
    let url = DatabaseUrl::parse(&database.url).unwrap();
    SqlStore::connect(&url, SecretBox::new(&KEY).unwrap())
        .await
        .unwrap()
}

/// A new database with a store on it that has cluster `prod` ([`new_cluster`]).
async fn store_with_prod(backend: Backend) -> (TestDatabase, SqlStore) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
    (database, store)
}

fn actor() -> Actor {
    Actor("test".to_owned())
}

fn new_cluster(name: &str) -> NewCluster {
    NewCluster {
        name: name.to_owned(),
        description: "conformance".to_owned(),
        odb: OdbSettings {
            odb_type: OdbType::Postgresql,
            host: "db.internal".to_owned(),
            port: 5432,
            user: "zato".to_owned(),
            db_name: "zato_odb".to_owned(),
            postgresql_schema: "public".to_owned(),
        },
        secrets: ClusterSecrets {
            odb_password: format!("odb-password-of-{name}"),
            secret_key: format!("secret-key-of-{name}"),
            jwt_secret: format!("jwt-secret-of-{name}"),
            admin_invoke_password: format!("invoke-password-of-{name}"),
        },
    }
}

struct IssuedToken {
    id: String,
    secret_hash: String,
}

async fn issue_token(store: &SqlStore, cluster: &str, max_uses: u32, ttl_ms: i64) -> IssuedToken {
    let id = secrets::random_hex(8).unwrap();
    let secret_hash = secrets::sha256_hex(secrets::random_hex(16).unwrap().as_bytes());
    store
        .create_join_token(
            NewJoinToken {
                labels: BTreeMap::new(),
                id: id.clone(),
                secret_hash: secret_hash.clone(),
                cluster: cluster.to_owned(),
                roles: Vec::new(),
                description: String::new(),
                expires_at_ms: now_ms() + ttl_ms,
                max_uses,
            },
            &actor(),
        )
        .await
        .unwrap();
    IssuedToken { id, secret_hash }
}

fn refusal(result: Result<impl std::fmt::Debug, StoreError>) -> TokenRefusal {
    match result {
        Err(StoreError::TokenRefused { reason, .. }) => reason,
        other => panic!("expected a refused token, got {other:?}"),
    }
}

fn assign(
    cluster: &str,
    role: Role,
    host: &str,
    name: Option<&str>,
    port: Option<u16>,
) -> NewAssignment {
    NewAssignment {
        cluster: cluster.to_owned(),
        role,
        name: name.map(str::to_owned),
        host: host.to_owned(),
        port,
        load_balancer: None,
    }
}

async fn enroll(store: &SqlStore, cluster: &str, host: &str) -> Host {
    let token = issue_token(store, cluster, 1, 60_000).await;
    let new = NewHost {
        id: secrets::random_hex(8).unwrap(),
        name: host.to_owned(),
        advertise_address: format!("10.0.0.{}", host.len()),
        labels: BTreeMap::new(),
    };
    store
        .enroll_host(&token.id, &token.secret_hash, new, &[])
        .await
        .unwrap()
        .0
}

/// Hosts `app-1` with a server and `lb` with a load balancer of cluster `prod`, bootstrapped.
async fn server_and_balancer(store: &SqlStore) -> (Host, Host) {
    let app = enroll(store, "prod", "app-1").await;
    let lb = enroll(store, "prod", "lb").await;
    for (role, host) in [(Role::Server, "app-1"), (Role::LoadBalancer, "lb")] {
        store
            .create_assignment(assign("prod", role, host, None, None), &actor())
            .await
            .unwrap();
    }
    finish_bootstrap(store, &app.id, 1, "10.0.0.5").await;
    (app, lb)
}

fn report(generation: u64, address: &str, bootstrap: Vec<BootstrapReport>) -> StatusReport {
    StatusReport {
        applied_generation: generation,
        advertise_address: address.to_owned(),
        heartbeat_interval_ms: 1_000,
        zato_installs: Vec::new(),
        components: Vec::new(),
        bootstrap,
    }
}

async fn scheduler_peer(store: &SqlStore, host_id: &str) -> Vec<String> {
    let plan = planner::render(&store.plan_inputs(host_id).await.unwrap());
    let scheduler = plan
        .components
        .iter()
        .find(|component| component.name == "scheduler")
        .unwrap();
    peer_address(scheduler.server.as_ref())
}

/// A peer endpoint of a desired state as Zato's address options take it, in a list of one (or
/// none): how these tests say which peer a component gets.
fn peer_address(endpoint: Option<&v1::Endpoint>) -> Vec<String> {
    endpoint
        .map(|endpoint| {
            let scheme = if endpoint.tls { "https" } else { "http" };
            format!("{scheme}://{}:{}", endpoint.host, endpoint.port)
        })
        .into_iter()
        .collect()
}

/// Host `host_id` (at `generation`, advertising `address`) reports cluster `prod`'s bootstrap
/// tasks done.
async fn finish_bootstrap(store: &SqlStore, host_id: &str, generation: u64, address: &str) {
    let done = |task| BootstrapReport {
        cluster: "prod".to_owned(),
        task,
        done: true,
        last_error: String::new(),
    };
    store
        .record_status(
            host_id,
            report(
                generation,
                address,
                vec![done(BootstrapTask::Odb), done(BootstrapTask::Cluster)],
            ),
        )
        .await
        .unwrap();
}

/// The load balancer's report: healthy, with `server1` in `state`.
fn balancer_report(state: &str) -> StatusReport {
    let mut balancer = report(1, "10.0.0.9", Vec::new());
    balancer.components = vec![ComponentStatus {
        cluster: "prod".to_owned(),
        role: Role::LoadBalancer,
        name: "load-balancer".to_owned(),
        state: v1::ComponentState::Running,
        healthy: true,
        last_error: String::new(),
        restarts: 0,
        services_revision: String::new(),
        config_revision: String::new(),
        python_revision: String::new(),
        python_installed: String::new(),
        user_conf_revision: String::new(),
        odb_epoch: 0,
        odb_empty: false,
        backends: vec![v1::BackendServerState {
            name: "server1".into(),
            address: "10.0.0.2:17010".into(),
            state: state.into(),
            check: "L7OK 200 Layer7 check passed, code 200".into(),
            sessions: 3,
            status: v1::BackendStatus::from_haproxy(state) as i32,
        }],
        restart_epoch: 0,
        rollout_held_since: None,
        rolls: false,
    }];
    balancer
}

macro_rules! store_conformance_suite {
    ($($backend_module:ident => $backend:expr),* $(,)?) => {$(
        mod $backend_module {
            use super::*;

            #[tokio::test]
            async fn cluster_survives_a_coordinator_restart() {
                super::cluster_survives_a_coordinator_restart($backend).await;
            }
            #[tokio::test]
            async fn services_are_stored_by_revision_and_reach_the_servers() {
                super::services_are_stored_by_revision_and_reach_the_servers($backend).await;
            }
            #[tokio::test]
            async fn configuration_and_user_config_are_sealed_and_reach_only_the_servers_needing_them() {
                super::configuration_and_user_config_are_sealed_and_reach_only_the_servers_needing_them($backend).await;
            }
            #[tokio::test]
            async fn python_dependencies_reach_the_servers_one_restart_at_a_time() {
                super::python_dependencies_reach_the_servers_one_restart_at_a_time($backend).await;
            }
            #[tokio::test]
            async fn scheduler_and_dashboard_settings_restart_only_their_role() {
                super::scheduler_and_dashboard_settings_restart_only_their_role($backend).await;
            }
            #[tokio::test]
            async fn server_settings_are_checked_stored_and_rolled_to_the_servers() {
                super::server_settings_are_checked_stored_and_rolled_to_the_servers($backend).await;
            }
            #[tokio::test]
            async fn a_restarted_server_is_held_out_of_rotation_for_min_healthy_time() {
                super::a_restarted_server_is_held_out_of_rotation_for_min_healthy_time($backend).await;
            }
            #[tokio::test]
            async fn zato_install_must_be_on_every_server_host() {
                super::zato_install_must_be_on_every_server_host($backend).await;
            }
            #[tokio::test]
            async fn max_unavailable_servers_restart_at_once() {
                super::max_unavailable_servers_restart_at_once($backend).await;
            }
            #[tokio::test]
            async fn a_server_past_its_healthy_deadline_stops_the_rollout() {
                super::a_server_past_its_healthy_deadline_stops_the_rollout($backend).await;
            }
            #[tokio::test]
            async fn a_rolling_restart_takes_the_servers_one_at_a_time() {
                super::a_rolling_restart_takes_the_servers_one_at_a_time($backend).await;
            }
            #[tokio::test]
            async fn duplicate_cluster_names_are_refused() {
                super::duplicate_cluster_names_are_refused($backend).await;
            }
            #[tokio::test]
            async fn the_health_probe_commits_a_write() {
                super::the_health_probe_commits_a_write($backend).await;
            }
            #[tokio::test]
            async fn two_coordinators_see_each_others_writes() {
                super::two_coordinators_see_each_others_writes($backend).await;
            }
            #[tokio::test]
            async fn a_deleted_clusters_tokens_stop_working() {
                super::a_deleted_clusters_tokens_stop_working($backend).await;
            }
            #[tokio::test]
            async fn join_tokens_are_refused_for_the_reason_that_applies() {
                super::join_tokens_are_refused_for_the_reason_that_applies($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_last_use_of_a_token_goes_to_one_caller() {
                super::the_last_use_of_a_token_goes_to_one_caller($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_hosts_enroll_at_once_with_one_token() {
                super::many_hosts_enroll_at_once_with_one_token($backend).await;
            }
            #[tokio::test]
            async fn no_secret_is_stored_in_clear() {
                super::no_secret_is_stored_in_clear($backend).await;
            }
            #[tokio::test]
            async fn events_are_listed_newest_first_and_by_cluster() {
                super::events_are_listed_newest_first_and_by_cluster($backend).await;
            }
            #[tokio::test]
            async fn hosts_are_listed_and_unique() {
                super::hosts_are_listed_and_unique($backend).await;
            }
            #[tokio::test]
            async fn assignments_get_names_and_ports_and_conflicts_are_refused() {
                super::assignments_get_names_and_ports_and_conflicts_are_refused($backend).await;
            }
            #[tokio::test]
            async fn enrollment_uses_the_token_and_one_host_bootstraps_each_cluster() {
                super::enrollment_uses_the_token_and_one_host_bootstraps_each_cluster($backend).await;
            }
            #[tokio::test]
            async fn a_finished_bootstrap_releases_components_with_new_generations() {
                super::a_finished_bootstrap_releases_components_with_new_generations($backend).await;
            }
            #[tokio::test]
            async fn a_server_added_or_removed_moves_only_the_hosts_that_name_servers() {
                super::a_server_added_or_removed_moves_only_the_hosts_that_name_servers($backend).await;
            }
            #[tokio::test]
            async fn token_roles_join_hosts_to_the_cluster() {
                super::token_roles_join_hosts_to_the_cluster($backend).await;
            }
            #[tokio::test]
            async fn a_cluster_is_rebuilt_on_an_empty_odb_only_when_asked() {
                super::a_cluster_is_rebuilt_on_an_empty_odb_only_when_asked($backend).await;
            }
            #[tokio::test]
            async fn removing_the_bootstrap_host_keeps_the_cluster_bootstrapped() {
                super::removing_the_bootstrap_host_keeps_the_cluster_bootstrapped($backend).await;
            }
            #[tokio::test]
            async fn the_scheduler_follows_a_healthy_server() {
                super::the_scheduler_follows_a_healthy_server($backend).await;
            }
            #[tokio::test]
            async fn a_rolling_restart_of_roles_goes_in_zatos_order() {
                super::a_rolling_restart_of_roles_goes_in_zatos_order($backend).await;
            }
            #[tokio::test]
            async fn the_scheduler_stays_with_its_server_through_its_rollout_restart() {
                super::the_scheduler_stays_with_its_server_through_its_rollout_restart($backend).await;
            }
            #[tokio::test]
            async fn a_drained_server_runs_until_load_balancers_stop_sending_to_it() {
                super::a_drained_server_runs_until_load_balancers_stop_sending_to_it($backend).await;
            }
            #[tokio::test]
            async fn a_host_of_another_cluster_never_gets_this_clusters_components() {
                super::a_host_of_another_cluster_never_gets_this_clusters_components($backend).await;
            }

            #[tokio::test]
            async fn a_host_reports_only_for_its_own_components() {
                super::a_host_reports_only_for_its_own_components($backend).await;
            }

            #[tokio::test]
            async fn a_hosts_events_are_limited_per_minute_and_old_events_pruned() {
                super::a_hosts_events_are_limited_per_minute_and_old_events_pruned($backend)
                    .await;
            }

            #[tokio::test]
            async fn a_hosts_labels_come_from_its_join_token() {
                super::a_hosts_labels_come_from_its_join_token($backend).await;
            }

            #[tokio::test]
            async fn enrollment_never_hands_a_host_what_its_token_does_not_allow() {
                super::enrollment_never_hands_a_host_what_its_token_does_not_allow($backend).await;
            }
            #[tokio::test]
            async fn only_a_host_that_reaches_the_odb_bootstraps() {
                super::only_a_host_that_reaches_the_odb_bootstraps($backend).await;
            }
            #[tokio::test]
            async fn an_unchanged_heartbeat_is_only_read_and_its_liveness_batched() {
                super::an_unchanged_heartbeat_is_only_read_and_its_liveness_batched($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_heartbeat_batch_never_waits_for_a_host_another_write_holds() {
                super::a_heartbeat_batch_never_waits_for_a_host_another_write_holds($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn writes_to_one_cluster_at_once_all_succeed() {
                super::writes_to_one_cluster_at_once_all_succeed($backend).await;
            }
            #[tokio::test]
            async fn recently_moved_generations_are_read_in_one_query() {
                super::recently_moved_generations_are_read_in_one_query($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_change_committed_through_one_coordinator_wakes_a_watch_held_by_another() {
                super::a_change_committed_through_one_coordinator_wakes_a_watch_held_by_another($backend).await;
            }
            #[tokio::test]
            async fn silent_hosts_are_marked_down_once_and_up_again() {
                super::silent_hosts_are_marked_down_once_and_up_again($backend).await;
            }
        }
    )*};
}

store_conformance_suite! {
    sqlite => Backend::Sqlite,
    postgres => Backend::Postgres,
    mariadb => Backend::MySql,
}
