//! What a pass does to the host's processes: runs `zato`, finds the process of a component, ends
//! one that has no pidfile, and asks a component whether it answers as its role must. [`Real`]
//! does it on this host; the pass's tests give it a scripted stand-in, so that a component's
//! creation, start, death and archiving are tested without Zato or mock-zato.
//!
//! Files are not behind it: a test gives the pass a temporary components directory, and what the
//! pass writes there is what a user would find. Nor are a server's admin services, ODB and `pip`
//! (reached only for a server, once it answers or has Python dependencies), nor HAProxy, which
//! the load balancer's driver runs itself (`crate::haproxy`).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::future::BoxFuture;
use muster_proto::v1::Role;

use crate::zato::{Arg, Zato, ZatoError, health, process};

/// The host's processes, as a pass sees them.
pub trait Facilities: Send + Sync {
    /// Runs `zato ARGS` in `directory` ([`Zato::run`]) with the `zato` command of another
    /// installation (`install`: its path) or, `None`, the host's own; `on_spawn` gets the
    /// command's pid.
    fn zato_with<'a>(
        &'a self,
        install: Option<&'a Path>,
        args: &'a [Arg],
        directory: &'a Path,
        on_spawn: &'a (dyn Fn(u32) + Sync),
    ) -> BoxFuture<'a, Result<String, ZatoError>>;

    /// Runs `zato ARGS` in `directory` with the host's own `zato` command.
    fn zato<'a>(
        &'a self,
        args: &'a [Arg],
        directory: &'a Path,
        on_spawn: &'a (dyn Fn(u32) + Sync),
    ) -> BoxFuture<'a, Result<String, ZatoError>> {
        self.zato_with(None, args, directory, on_spawn)
    }

    /// The process that runs the component in `directory`, if one does ([`process::find`]).
    fn component_process(&self, directory: &Path) -> Option<i32>;

    /// Whether process `pid` lives.
    fn alive(&self, pid: i32) -> bool;

    /// Ends the processes of the component in `directory`, which has no pidfile for `zato stop`:
    /// SIGTERM, then SIGKILL after `patience`. Says whether all are gone.
    fn terminate<'a>(&'a self, directory: &'a Path, patience: Duration) -> BoxFuture<'a, bool>;

    /// Whether the `role` component at `address:port` answers as its role must (a server's ping,
    /// the dashboard's login form, the scheduler's API with `api_password`); why not.
    fn answers<'a>(
        &'a self,
        role: Role,
        address: IpAddr,
        port: u16,
        api_password: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// This host's processes, and the `zato` command it runs.
pub struct Real {
    pub zato: Zato,
}

impl Facilities for Real {
    fn zato_with<'a>(
        &'a self,
        install: Option<&'a Path>,
        args: &'a [Arg],
        directory: &'a Path,
        on_spawn: &'a (dyn Fn(u32) + Sync),
    ) -> BoxFuture<'a, Result<String, ZatoError>> {
        match install {
            None => Box::pin(self.zato.run(args, directory, on_spawn)),
            Some(bin) => Box::pin(async move {
                let zato = Zato {
                    bin: bin.to_owned(),
                    run_as: self.zato.run_as.clone(),
                };
                zato.run(args, directory, on_spawn).await
            }),
        }
    }

    fn component_process(&self, directory: &Path) -> Option<i32> {
        process::find(directory)
    }

    fn alive(&self, pid: i32) -> bool {
        process::alive(pid)
    }

    fn terminate<'a>(&'a self, directory: &'a Path, patience: Duration) -> BoxFuture<'a, bool> {
        Box::pin(process::terminate(directory, patience))
    }

    fn answers<'a>(
        &'a self,
        role: Role,
        address: IpAddr,
        port: u16,
        api_password: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match role {
                Role::Server => health::server(address, port).await,
                Role::WebAdmin => health::dashboard(address, port).await,
                Role::Scheduler => health::scheduler(address, port, api_password).await,
                Role::LoadBalancer | Role::Unspecified => Ok(()),
            }
        })
    }
}
