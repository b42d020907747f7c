//! Loading ONNX Runtime.
//!
//! `ort` is built with `load-dynamic`: nothing links against ONNX Runtime at build time and
//! the shared library is opened here, once per process, from a path the operator chooses
//! (`--ort-dylib-path` / `ORT_DYLIB_PATH`). A missing or unloadable library is an error that
//! names the path tried; `ort::init()` (which panics) is never called. ONNX Runtime allows
//! one environment per process, so the result is memoised: later calls get the same answer.
//! The version reported (`/info`, `rradistill_build_info`) is the loaded library's own
//! (`OrtGetApiBase()->GetVersionString()`), not the one the Makefile fetches.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};

/// The ONNX Runtime version `make` fetches; the default library path carries it.
pub const ORT_VERSION: &str = "1.32.0";

static ENVIRONMENT: OnceLock<
    std::result::Result<(PathBuf, ort::environment::Environment), String>,
> = OnceLock::new();
static LOADED_VERSION: OnceLock<String> = OnceLock::new();

/// The version string of the ONNX Runtime library this process loaded (e.g. "1.32.0"), once
/// [`init`] has succeeded.
pub fn loaded_version() -> Option<&'static str> {
    LOADED_VERSION.get().map(String::as_str)
}

/// Asks the library itself. It is already open (ort opened it), so this only takes another
/// reference to the same handle and releases it.
fn library_version(path: &Path) -> Option<String> {
    // SAFETY: `path` is the ONNX Runtime library ort has just loaded and validated;
    // `OrtGetApiBase` is its C entry point, returning a pointer to a static struct whose
    // `GetVersionString` returns a static NUL-terminated string.
    unsafe {
        let library = libloading::Library::new(path).ok()?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            library.get(b"OrtGetApiBase").ok()?;
        let base = get_base();
        if base.is_null() {
            return None;
        }
        let version = ((*base).GetVersionString)();
        if version.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(version)
            .to_str()
            .ok()
            .map(str::to_owned)
    }
}

/// Opens the ONNX Runtime shared library at `path` and creates the process's environment.
///
/// Idempotent: a second call with the same path is a no-op; with another path it fails,
/// because a process can only ever hold one ONNX Runtime.
pub fn init(path: &Path) -> Result<()> {
    let outcome = ENVIRONMENT.get_or_init(|| load(path).map(|env| (path.to_path_buf(), env)));
    match outcome {
        Ok((loaded, _)) if loaded == path => Ok(()),
        Ok((loaded, _)) => bail!(
            "ONNX Runtime is already loaded from {}; cannot load a second one from {}",
            loaded.display(),
            path.display()
        ),
        Err(message) => Err(anyhow!("{message}")),
    }
}

/// The process's ONNX Runtime environment; [`init`] must have succeeded first.
pub fn environment() -> Result<&'static ort::environment::Environment> {
    match ENVIRONMENT.get() {
        Some(Ok((_, env))) => Ok(env),
        Some(Err(message)) => Err(anyhow!("{message}")),
        None => bail!("ONNX Runtime is not loaded yet (runtime::init was not called)"),
    }
}

fn load(path: &Path) -> std::result::Result<ort::environment::Environment, String> {
    if !path.is_file() {
        return Err(format!(
            "ONNX Runtime library not found at {} (set --ort-dylib-path or ORT_DYLIB_PATH; \
             `make setup` fetches libonnxruntime.so.{ORT_VERSION} into .runtime/onnxruntime/)",
            path.display()
        ));
    }
    // ort validates the library's API version while loading and reports it as an error.
    let builder = ort::init_from(path).map_err(|e| {
        format!(
            "could not load ONNX Runtime from {}: {e} (need ONNX Runtime >= 1.22)",
            path.display()
        )
    })?;
    if let Some(version) = library_version(path) {
        let _ = LOADED_VERSION.set(version);
    }
    builder
        .with_name("rradistill")
        .with_telemetry(false)
        .build()
        .map_err(|e| {
            format!(
                "could not create the ONNX Runtime environment from {}: {e}",
                path.display()
            )
        })
}
