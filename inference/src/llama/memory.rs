//! llama.cpp's log, forwarded to `tracing`, and the buffer sizes read from it.
//!
//! llama.cpp's C API has no call that returns the size of a context's KV
//! cache or compute buffers (`llama_get_memory_breakdown` is C++ only, and
//! `llama_memory_breakdown_print` prints whole MiB). It does log every buffer
//! it allocates while creating a context:
//!
//! ```text
//! llama_kv_cache:        CPU KV buffer size =    32.00 MiB
//! llama_context:        CPU  output buffer size =     0.12 MiB
//! llama_context:        CPU compute buffer size =    72.01 MiB
//! ```
//!
//! The log callback installed here forwards every line to `tracing` (target
//! `llama_cpp`) and, while the current thread is creating a context, adds up
//! those sizes. llama.cpp logs from the thread that calls it, so a
//! thread-local capture sees only its own context. The sizes are
//! `ggml_backend_buffer_get_size` of the real buffers, printed with two
//! decimals: accurate to about 5 KiB per buffer.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};

use llama_cpp_sys_2::ggml_log_level;

/// Bytes of the buffers llama.cpp reported while a capture was active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Allocations {
    /// KV cache (and recurrent state) buffers.
    pub(crate) kv_cache: u64,
    /// Compute and output buffers.
    pub(crate) compute: u64,
    /// Whether any KV buffer line was seen.
    pub(crate) seen_kv: bool,
}

thread_local! {
    static CAPTURE: RefCell<Option<Allocations>> = const { RefCell::new(None) };
}

/// Runs `f`, returning what llama.cpp logged as allocated on this thread meanwhile.
pub(crate) fn capture_allocations<T>(f: impl FnOnce() -> T) -> (T, Allocations) {
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(Allocations::default()));
    let value = f();
    let allocations = CAPTURE
        .with(|capture| capture.borrow_mut().take())
        .unwrap_or_default();
    (value, allocations)
}

/// Routes llama.cpp's and ggml's log through [`log_callback`]. Called once,
/// with the backend's initialisation.
pub(crate) fn install_log_callback() {
    // SAFETY: the callback is a plain function that lives for the whole
    // program; llama.cpp passes the user data back untouched and we use none.
    unsafe { llama_cpp_sys_2::llama_log_set(Some(log_callback), std::ptr::null_mut()) };
}

extern "C" fn log_callback(level: ggml_log_level, text: *const c_char, _user_data: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for this call.
    let line = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    observe(&line);
    let line = line.trim_end();
    if line.is_empty() {
        return;
    }
    match level {
        llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR => tracing::error!(target: "llama_cpp", "{line}"),
        llama_cpp_sys_2::GGML_LOG_LEVEL_WARN => tracing::warn!(target: "llama_cpp", "{line}"),
        llama_cpp_sys_2::GGML_LOG_LEVEL_INFO => tracing::debug!(target: "llama_cpp", "{line}"),
        _ => tracing::trace!(target: "llama_cpp", "{line}"),
    }
}

/// Adds a buffer-size line to the current thread's capture, if one is active.
fn observe(line: &str) {
    let Some((kind, bytes)) = parse_buffer_line(line) else {
        return;
    };
    CAPTURE.with(|capture| {
        // A log line inside a borrow cannot happen (we never log while
        // holding it), but a failed borrow must not panic across FFI.
        if let Ok(mut capture) = capture.try_borrow_mut() {
            if let Some(allocations) = capture.as_mut() {
                match kind {
                    BufferKind::Kv => {
                        allocations.kv_cache += bytes;
                        allocations.seen_kv = true;
                    }
                    BufferKind::Compute => allocations.compute += bytes,
                }
            }
        }
    });
}

#[derive(Debug, PartialEq, Eq)]
enum BufferKind {
    Kv,
    Compute,
}

/// `(kind, bytes)` of a llama.cpp "… buffer size = N MiB" line about a
/// context buffer.
fn parse_buffer_line(line: &str) -> Option<(BufferKind, u64)> {
    let (head, tail) = line.split_once(" buffer size = ")?;
    let kind = if head.ends_with(" KV") || head.ends_with(" RS") {
        BufferKind::Kv
    } else if head.ends_with(" compute") || head.ends_with(" output") {
        BufferKind::Compute
    } else {
        return None;
    };
    let mib: f64 = tail.trim().strip_suffix("MiB")?.trim().parse().ok()?;
    if !mib.is_finite() || mib < 0.0 {
        return None;
    }
    Some((kind, (mib * 1024.0 * 1024.0).round() as u64))
}

/// KV cache bytes computed from the context shape, for when llama.cpp's log
/// was not captured: K and V in f16 (llama.cpp's default cache type), one
/// row of `n_embd_kv` per token and layer.
pub(crate) fn computed_kv_bytes(
    n_ctx_total: u64,
    n_layer: u64,
    n_embd: u64,
    n_head: u64,
    n_head_kv: u64,
) -> u64 {
    let head_dim = n_embd.checked_div(n_head).unwrap_or(0);
    let n_embd_kv = head_dim * n_head_kv;
    2 * n_ctx_total * n_layer * n_embd_kv * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_buffer_lines_are_parsed_to_bytes() {
        assert_eq!(
            parse_buffer_line("llama_kv_cache:        CPU KV buffer size =    32.00 MiB\n"),
            Some((BufferKind::Kv, 32 * 1024 * 1024))
        );
        assert_eq!(
            parse_buffer_line("llama_context:        CPU compute buffer size =     0.50 MiB"),
            Some((BufferKind::Compute, 512 * 1024))
        );
        assert_eq!(
            parse_buffer_line("llama_context:        CPU  output buffer size =     0.25 MiB"),
            Some((BufferKind::Compute, 256 * 1024))
        );
        assert_eq!(
            parse_buffer_line("load_tensors:   CPU_Mapped model buffer size =   100.00 MiB"),
            None
        );
        assert_eq!(parse_buffer_line("llama_context: n_ctx = 512"), None);
    }

    #[test]
    fn capture_adds_up_lines_logged_on_this_thread_only() {
        let ((), allocations) = capture_allocations(|| {
            observe("llama_kv_cache: CPU KV buffer size = 1.00 MiB");
            observe("llama_context: CPU compute buffer size = 2.00 MiB");
            observe("llama_context: CPU  output buffer size = 1.00 MiB");
        });
        assert_eq!(allocations.kv_cache, 1 << 20);
        assert_eq!(allocations.compute, 3 << 20);
        assert!(allocations.seen_kv);
        // Outside a capture nothing is recorded.
        observe("llama_kv_cache: CPU KV buffer size = 1.00 MiB");
        let ((), none) = capture_allocations(|| ());
        assert_eq!(none, Allocations::default());
    }

    #[test]
    fn computed_kv_matches_the_f16_cache_formula() {
        // 512 tokens, 2 layers, 64 wide, 4 heads of which 2 KV heads: 32 per token and layer.
        assert_eq!(computed_kv_bytes(512, 2, 64, 4, 2), 2 * 512 * 2 * 32 * 2);
    }
}
