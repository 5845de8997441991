//! The one llama.cpp backend of this test binary (llama.cpp allows one
//! per process) and its log, which the memory estimate tests read.

use std::ffi::{c_char, c_void, CStr};
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;

/// What llama.cpp logged since the last measurement cleared it.
pub(crate) static LOG: Mutex<String> = Mutex::new(String::new());
/// One llama.cpp user at a time: the log is global to the process.
pub(crate) static MEASURE: Mutex<()> = Mutex::new(());

unsafe extern "C" fn capture_log(_level: u32, text: *const c_char, _data: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    if let Ok(mut log) = LOG.lock() {
        log.push_str(&text);
    }
}

/// The backend, initialised once with the log captured into [`LOG`].
pub(crate) fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        // SAFETY: `capture_log` has the signature ggml expects and is 'static.
        unsafe { llama_cpp_sys_2::llama_log_set(Some(capture_log), std::ptr::null_mut()) };
        LlamaBackend::init().expect("llama backend init")
    })
}
