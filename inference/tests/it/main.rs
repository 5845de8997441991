//! The integration tests of `troupe-inference`, one binary (each test binary links
//! the whole dependency tree, llama.cpp included): a module per area.

mod remote_support;
mod schema_support;

mod engine_embed;
mod engine_llama;
mod gpu_vulkan;
mod real_models;
mod remote_provider;
mod schema_convert;
mod schema_property;
mod scripted;
mod sentence_embedder;
mod tool_templates;
