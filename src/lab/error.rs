//! Errors of the `lab` layer: each one says where (file:line), on which object,
//! what is wrong and, where we can, what to do about it.

use std::fmt;
use std::path::PathBuf;

/// Where in the input an object or a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    /// 1-based line of the document start or of the error.
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{path}: cannot read lab file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: invalid YAML: {message}")]
    Yaml { at: Source, message: String },
    #[error("{at}: {object}: {message}")]
    Invalid {
        at: Source,
        /// `Deployment/my-nginx`, `Lab`, …
        object: String,
        message: String,
    },
    #[error("{} problems in the lab files:\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Many(Vec<LabError>),
}

impl LabError {
    pub fn invalid(at: &Source, object: impl Into<String>, message: impl Into<String>) -> Self {
        LabError::Invalid {
            at: at.clone(),
            object: object.into(),
            message: message.into(),
        }
    }

    /// One error stays itself; several become `Many`.
    pub fn collect(mut errors: Vec<LabError>) -> Result<(), LabError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(LabError::Many(errors)),
        }
    }
}
