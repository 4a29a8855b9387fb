//! The error type of Kubernetes mode.

/// Why the controller or the proxy stopped.
#[derive(Debug, thiserror::Error)]
pub enum KubeModeError {
    /// Could not build a Kubernetes client (no in-cluster config and no kubeconfig).
    #[error("cannot configure the Kubernetes client: {0}")]
    ClientConfig(String),
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A socket or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A command-line value is not usable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caches never became ready.
    #[error("caches did not sync: {0}")]
    NotSynced(String),
}

impl KubeModeError {
    /// An I/O error, saying what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        KubeModeError::Io {
            what: what.into(),
            source,
        }
    }
}
