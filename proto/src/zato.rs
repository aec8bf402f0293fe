//! Facts of Zato 3.2 that the coordinator and the agent both depend on.

/// The dashboard's user whose password Muster sets (`zato create web-admin` makes it).
pub const DASHBOARD_USER: &str = "admin";
