//! ONNX Runtime, and nothing about our models: loading the shared library, execution providers,
//! sessions with checked named I/O, and tensor conversions.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`), from the first of: an explicit path
//! (`--ort-lib`), `$ORT_DYLIB_PATH`, the path `.cargo/config.toml` pointed at when zoom was built, and
//! `libonnxruntime.so` next to the executable. A missing library is an error that says what to run.

mod precision;
mod providers;
mod session;
mod tensor;

pub use precision::Precision;
pub use providers::{parse_provider_list, ConvSearch, Provider};
pub use session::{precheck_model_file, Model, SessionOptions, TensorInfo};
pub use tensor::{DType, Tensor};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static ENVIRONMENT: OnceLock<ort::environment::Environment> = OnceLock::new();
static LIBRARY_PATH: OnceLock<PathBuf> = OnceLock::new();

/// The command a user runs to get the library; quoted in every "not found" error.
pub const FETCH_HINT: &str =
    "run `bash scripts/fetch-onnxruntime.sh` in the zoom checkout (or `bash scripts/setup.sh`), \
or point --ort-lib / ORT_DYLIB_PATH at a libonnxruntime.so (version >= 1.24)";

fn candidate_paths(explicit: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push((p.to_path_buf(), "--ort-lib"));
        return out;
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push((PathBuf::from(p), "$ORT_DYLIB_PATH"));
        return out;
    }
    // Set by `.cargo/config.toml` at build time: lets `target/release/zoom` run outside cargo.
    if let Some(p) = option_env!("ORT_DYLIB_PATH") {
        out.push((PathBuf::from(p), "build-time ORT_DYLIB_PATH"));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            out.push((dir.join("libonnxruntime.so"), "next to the executable"));
        }
    }
    out
}

/// Loads ONNX Runtime (once per process) and returns the shared environment.
///
/// `explicit` is the user's `--ort-lib`; when given, it is the only place looked at.
pub fn init(explicit: Option<&Path>) -> Result<&'static ort::environment::Environment> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let candidates = candidate_paths(explicit);
    let found = candidates.iter().find(|(p, _)| p.is_file());
    let Some((path, _)) = found else {
        let tried: Vec<String> = candidates
            .iter()
            .map(|(p, why)| format!("{} ({why})", p.display()))
            .collect();
        return Err(Error::RuntimeLibrary {
            message: format!(
                "ONNX Runtime library not found (looked at: {}); {FETCH_HINT}",
                if tried.is_empty() {
                    "nothing".to_string()
                } else {
                    tried.join(", ")
                }
            ),
        });
    };
    let builder = ort::init_from(path).map_err(|e| Error::RuntimeLibrary {
        message: format!(
            "cannot load ONNX Runtime from {}: {e}; {FETCH_HINT}",
            path.display()
        ),
    })?;
    let env = builder
        .with_name("zoom")
        .with_telemetry(false)
        .build()
        .map_err(|e| Error::runtime("creating the ONNX Runtime environment", e))?;
    let _ = LIBRARY_PATH.set(path.clone());
    Ok(ENVIRONMENT.get_or_init(|| env))
}

/// The path the library was loaded from, once [`init`] succeeded.
pub fn library_path() -> Option<&'static Path> {
    LIBRARY_PATH.get().map(PathBuf::as_path)
}

/// ONNX Runtime's version (e.g. `1.31.1`), read from the library's build-info string, else from
/// the file name the library resolves to; requires [`init`].
pub fn version() -> String {
    let info = ort::info();
    if let Some(rest) = info.split("git-branch=rel-").nth(1) {
        let v: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if !v.is_empty() {
            return v;
        }
    }
    library_path()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .and_then(|f| f.strip_prefix("libonnxruntime.so.").map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// ONNX Runtime's full build-info string (branch, commit, build type, flags).
pub fn build_info() -> String {
    ort::info().to_string()
}

/// Execution providers compiled into the loaded ONNX Runtime library (requires [`init`]).
pub fn available_providers() -> Vec<String> {
    let api = ort::api();
    let mut ptr: *mut *mut std::ffi::c_char = std::ptr::null_mut();
    let mut len: std::ffi::c_int = 0;
    // SAFETY: plain C API call; the returned array is released below with its own length.
    unsafe {
        let status = (api.GetAvailableProviders)(&mut ptr, &mut len);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
            return Vec::new();
        }
        let names = (0..len as usize)
            .map(|i| {
                std::ffi::CStr::from_ptr(*ptr.add(i))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let _ = (api.ReleaseAvailableProviders)(ptr, len);
        names
    }
}
