//! The Muster host agent. Not built yet: this crate holds its place in the workspace until the agent lands.
