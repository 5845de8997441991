//! The integration tests of `troupe`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod dashboard_support;
mod in_process;
mod serve_support;
mod support;
mod tasks_support;

mod agent_cli;
mod agents;
mod checkers;
mod cli;
mod cluster;
mod dashboard;
mod embeddings_sentence;
mod failover;
mod learner_cli;
mod mcp_server;
mod memory_agents;
mod native_tools;
mod ollama_api;
mod remote_troupe;
mod serve;
mod tasks_api;
mod tui;
