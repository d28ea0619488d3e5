//! Errors of the graph crate. Every error names what a user needs to find the problem: the file,
//! the node (first, as `in node "conv_3" (Conv): …`), the attribute or value.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from reading, transforming or differentiating an ONNX model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not a valid ONNX model (not protobuf, truncated, no graph).
    #[error("{}: not a valid ONNX model: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A file is larger than the configured limit.
    #[error("{}: file is {size} bytes, above the limit of {limit} bytes ({what})", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
        /// Which limit (model file or external data).
        what: &'static str,
    },
    /// An initializer's external data could not be resolved.
    #[error("{}: tensor \"{tensor}\": external data: {message}", model.display())]
    ExternalData {
        /// The model file whose directory the location is relative to.
        model: PathBuf,
        /// The tensor.
        tensor: String,
        /// What was wrong.
        message: String,
    },
    /// The model's structure is invalid (dangling value, duplicate output, cycle, …).
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// An attribute is missing or has the wrong type or value.
    #[error("in node \"{node}\" ({op_type}): attribute \"{attribute}\": {message}")]
    Attribute {
        /// Node name (or a description of an unnamed node).
        node: String,
        /// Operator type.
        op_type: String,
        /// Attribute name.
        attribute: String,
        /// What was wrong.
        message: String,
    },
    /// A node is invalid or cannot be processed (wrong number of inputs, bad shapes, …).
    #[error("in node \"{node}\" ({op_type}): {message}")]
    Node {
        /// Node name (or a description of an unnamed node).
        node: String,
        /// Operator type.
        op_type: String,
        /// What was wrong.
        message: String,
    },
    /// No gradient rule exists for an operator on the differentiated path.
    #[error(
        "in node \"{node}\": no gradient rule for operator {op_type}{}; \
         use the finite-difference gradient source for this model instead",
        if domain.is_empty() { String::new() } else { format!(" (domain \"{domain}\")") }
    )]
    UnsupportedOp {
        /// Operator type.
        op_type: String,
        /// Operator domain ("" = default ONNX domain).
        domain: String,
        /// Node name (or a description of an unnamed node).
        node: String,
    },
    /// An operator has a rule, but not for this variant (attribute value, weight gradient, …).
    #[error(
        "in node \"{node}\" ({op_type}): gradient not supported: {message}; \
         use the finite-difference gradient source for this model instead"
    )]
    UnsupportedVariant {
        /// Node name (or a description of an unnamed node).
        node: String,
        /// Operator type.
        op_type: String,
        /// What is not supported.
        message: String,
    },
    /// Shape or type inference failed or a needed shape is unknown.
    #[error("shape inference: {0}")]
    Shape(String),
    /// A caller-supplied argument is invalid (unknown input name, bad `--shape`, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// Two graphs could not be composed.
    #[error("compose: {0}")]
    Compose(String),
}

impl Error {
    /// True for the errors that mean "this model needs finite differences": an operator or an
    /// operator variant without a gradient rule.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            Error::UnsupportedOp { .. } | Error::UnsupportedVariant { .. }
        )
    }
}

/// A non-fatal problem reported to the caller (e.g. a dynamic dimension fixed to 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The message, complete and self-contained.
    pub message: String,
}

impl Warning {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Warning {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
