//! Which GPU backends this build of llama.cpp has.
//!
//! GPU support is chosen at compile time through this crate's `cuda`,
//! `vulkan` and `metal` features (forwarded from nowhere else). A request for
//! a backend the build lacks fails with a message that says which feature to
//! build with, rather than silently running on the CPU.

/// The GPU features this crate was built with, e.g. `["cuda"]`; empty for a
/// CPU-only build.
pub fn compiled_gpu_features() -> &'static [&'static str] {
    const FEATURES: &[&str] = &[
        #[cfg(feature = "cuda")]
        "cuda",
        #[cfg(feature = "vulkan")]
        "vulkan",
        #[cfg(feature = "metal")]
        "metal",
    ];
    FEATURES
}

/// The GPU backends a build can have.
pub const KNOWN_GPU_FEATURES: &[&str] = &["cuda", "vulkan", "metal"];

/// Why a GPU backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The backend exists but this build does not include it.
    #[error("built without {name}; rebuild with --features {name}")]
    NotCompiled {
        /// The backend asked for.
        name: String,
    },
    /// No such backend.
    #[error("unknown GPU backend `{name}`; known: cuda, vulkan, metal")]
    Unknown {
        /// The backend asked for.
        name: String,
    },
}

/// Checks that this build includes the GPU backend `name` (`cuda`,
/// `vulkan` or `metal`).
///
/// # Errors
/// [`DeviceError::NotCompiled`] saying which feature to rebuild with, or
/// [`DeviceError::Unknown`].
pub fn require_gpu(name: &str) -> Result<(), DeviceError> {
    let name = name.to_ascii_lowercase();
    if !KNOWN_GPU_FEATURES.contains(&name.as_str()) {
        return Err(DeviceError::Unknown { name });
    }
    if compiled_gpu_features().contains(&name.as_str()) {
        Ok(())
    } else {
        Err(DeviceError::NotCompiled { name })
    }
}

/// Sets up every GPU device llama.cpp found, once, before any model loads.
///
/// ggml-vulkan sets a device up lazily on its first use, without a lock:
/// two models loading at once on their own threads can meet a half-built
/// device and abort the process (`GGML_ASSERT(ggml_backend_supports_buft(..))`
/// in ggml-backend.cpp; seen with lavapipe). Asking each device for its
/// buffer type does that setup here, inside the backend's one-time
/// initialisation, where no other thread can race it.
pub(crate) fn init_gpu_devices() {
    // SAFETY: plain queries of ggml's device registry, which lives for the
    // whole process; every device pointer comes from the registry itself.
    unsafe {
        for index in 0..llama_cpp_sys_2::ggml_backend_dev_count() {
            let device = llama_cpp_sys_2::ggml_backend_dev_get(index);
            if !device.is_null()
                && llama_cpp_sys_2::ggml_backend_dev_type(device)
                    != llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_CPU
            {
                llama_cpp_sys_2::ggml_backend_dev_buffer_type(device);
            }
        }
    }
}

/// Loads ggml's backend modules in a `portable` build: every CPU variant
/// (`libggml-cpu-haswell.so`, `-skylakex`, `-sapphirerapids`, …; ggml keeps
/// the best one this CPU can run) and any GPU backend built beside them.
/// They are looked for next to the executable first (where a distributed
/// build puts them), then where this build wrote them.
#[cfg(feature = "portable")]
pub(crate) fn load_backend_modules() {
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
        // llama-cpp-2 panics on a directory name that is not UTF-8; such a
        // build falls back to the backends directory it was built with.
        .filter(|dir| dir.to_str().is_some() && has_cpu_variants(dir));
    match beside_exe {
        Some(dir) => llama_cpp_2::llama_backend::load_backends_from_path(&dir),
        None => llama_cpp_2::llama_backend::load_backends(),
    }
    // SAFETY: a plain query of ggml's device registry.
    let devices = unsafe { llama_cpp_sys_2::ggml_backend_dev_count() };
    if devices == 0 {
        tracing::error!("no ggml backend module was found next to the executable or in the build's backends directory");
    }
}

#[cfg(feature = "portable")]
fn has_cpu_variants(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("libggml-cpu"))
        })
    })
}

/// What to tell a user who asked for GPU offload in a build that cannot do it.
pub(crate) fn missing_gpu_reason() -> String {
    match compiled_gpu_features() {
        [] => "this build has no GPU backend; rebuild with --features cuda, vulkan or metal".into(),
        features => format!(
            "llama.cpp found no usable GPU device (built with {})",
            features.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_backend_names_the_feature_to_enable() {
        for name in KNOWN_GPU_FEATURES {
            if compiled_gpu_features().contains(name) {
                assert_eq!(require_gpu(name), Ok(()));
            } else {
                let message = require_gpu(name).map_err(|e| e.to_string());
                assert_eq!(
                    message,
                    Err(format!(
                        "built without {name}; rebuild with --features {name}"
                    ))
                );
            }
        }
        assert!(matches!(
            require_gpu("opencl"),
            Err(DeviceError::Unknown { .. })
        ));
    }
}
