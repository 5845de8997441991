//! The integration tests of `troupe-host`, one binary (it links the whole
//! dependency tree, llama.cpp included).

mod model_host;
