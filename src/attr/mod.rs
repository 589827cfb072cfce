//! Attribute lists: what one accessor needs of a buffer.
//!
//! (Placeholder: the core-model work fills this module.)

mod common;

pub use common::{AccessorKind, BackendKind, Permission};

/// An attribute list operation that was refused; the list is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    /// Placeholder.
    #[error("placeholder")]
    Placeholder,
}
