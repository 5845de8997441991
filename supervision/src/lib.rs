//! troupe-supervision: the root supervisor, restart policies from config, and
//! recovery of unfinished tasks on boot.
//!
//! Not written yet: the agent-runtime issue fills it.
