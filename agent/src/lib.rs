//! The Muster host agent: not built yet (see the agent issue). This crate holds its place in the workspace.
