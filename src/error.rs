//! The library's error type. Every variant carries what a user needs to act: the file, the config
//! key, the tensor or node, and what was expected. `main` maps kinds to exit codes.

use std::path::{Path, PathBuf};

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in zoom, grouped by what the user has to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration or command-line value is wrong (missing key, wrong type, impossible value).
    #[error("{file}: {}{message}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
    Config {
        /// The config file (or `command line`).
        file: String,
        /// Dotted key path, e.g. `search.bound`.
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A model file is missing, not ONNX, truncated or otherwise unreadable.
    #[error("{}: {message}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor has the wrong name, dtype or shape for the model it is fed to.
    #[error("{model}: tensor `{tensor}`: {message}")]
    Tensor {
        /// The model (file name) the tensor belongs to.
        model: String,
        /// Input or output name.
        tensor: String,
        /// What was expected and what was found.
        message: String,
    },
    /// A data file (npy, image) could not be decoded.
    #[error("{}: {message}", path.display())]
    Data {
        /// The data file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The ONNX Runtime library could not be found or loaded.
    #[error("{message}")]
    RuntimeLibrary {
        /// What was tried and what to run instead.
        message: String,
    },
    /// ONNX Runtime reported an error while building a session or running a model.
    #[error("{context}: {message}")]
    Runtime {
        /// What zoom was doing (model file, step).
        context: String,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A graph transformation (autodiff, composition) failed.
    #[error("{0}")]
    Graph(String),
    /// The exact gradient disagrees with finite differences.
    #[error("gradient check failed: {0}")]
    GradientCheck(String),
    /// Writing the report failed in a way that is not a plain I/O error.
    #[error("report: {0}")]
    Report(String),
}

impl Error {
    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Shorthand for a model-file error.
    pub fn model(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Model {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// A model-file error from the graph crate. Its file-level errors (unreadable, not ONNX,
    /// too large, bad external data) already start with the file name; it is not repeated.
    pub fn model_graph(path: impl AsRef<Path>, err: &zoom_graph::Error) -> Self {
        let path = path.as_ref();
        let full = err.to_string();
        let message = full
            .strip_prefix(&format!("{}: ", path.display()))
            .map_or_else(|| full.clone(), str::to_string);
        Error::model(path, message)
    }

    /// Shorthand for a config error.
    pub fn config(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Config {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a data-file error.
    pub fn data(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// Shorthand for an ONNX Runtime error with context.
    pub fn runtime(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Runtime {
            context: context.into(),
            message: err.to_string(),
        }
    }

    /// The documented process exit code for this error: 2 for usage/config errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } => 2,
            _ => 1,
        }
    }
}
