//! Facts of Zato 3.2 that the coordinator and the agent both depend on.

/// The dashboard's user whose password Muster sets (`zato create web-admin` makes it).
pub const DASHBOARD_USER: &str = "admin";

use crate::v1::Role;

/// The first server's HTTP port in Zato's quickstart; further servers take the next free ports.
pub const FIRST_SERVER_PORT: u16 = 17010;
/// The scheduler's port (`zato create scheduler --bind-port`'s default).
pub const SCHEDULER_PORT: u16 = 31530;
/// The dashboard's port (`zato create web-admin`'s default).
pub const DASHBOARD_PORT: u16 = 8183;
/// The first of a server's IPC ports (`ipc_port_start` in `server.conf`); each server uses ten.
pub const FIRST_IPC_PORT: u16 = 17050;

/// The port a component of `role` gets when its assignment names none: Zato's own, and for a
/// server the first from [`FIRST_SERVER_PORT`] that is not in `taken`.
pub fn default_port(role: Role, taken: &[u16]) -> u16 {
    match role {
        Role::Server => (FIRST_SERVER_PORT..u16::MAX)
            .find(|port| !taken.contains(port))
            .unwrap_or(FIRST_SERVER_PORT),
        Role::Scheduler => SCHEDULER_PORT,
        Role::WebAdmin => DASHBOARD_PORT,
        Role::LoadBalancer | Role::Unspecified => crate::haproxy::DEFAULT_FRONTEND_PORT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_take_the_first_free_port_and_the_rest_zatos_own() {
        assert_eq!(default_port(Role::Server, &[]), 17010);
        assert_eq!(default_port(Role::Server, &[17010, 17011, 17013]), 17012);
        assert_eq!(default_port(Role::Scheduler, &[31530]), 31530);
        assert_eq!(default_port(Role::WebAdmin, &[]), 8183);
        assert_eq!(default_port(Role::LoadBalancer, &[]), 11223);
    }
}
