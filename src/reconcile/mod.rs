//! Reconciliation of attribute lists into one layout.
//!
//! (Placeholder: the core-model work fills this module.)

use std::fmt;

/// Why a set of lists could not be reconciled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Placeholder.
    pub message: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
