//! The vocabulary every other module shares: permissions, accessor and backend kinds, attribute
//! keys, the small value enums, the pixel format table, and the memory requirement.
//!
//! A leaf: it imports nothing else of the crate, so [`crate::attr`], [`crate::layout`],
//! [`crate::reconcile`] and [`crate::backend`] can all build on it without importing each
//! other in a circle (`tests/module_graph.rs` checks the arrows). Its items are re-exported
//! where users look for them: `unibuf::attr::{Permission, Key, DataType, ...}`,
//! `unibuf::layout::{PixelFormat, format}` and `unibuf::backend::MemoryRequirement`.

mod common;
pub mod format;
mod key;
mod memory;
mod values;

pub use common::{AccessorKind, BackendKind, Permission};
pub use format::{PixelFormat, UnknownFormat};
pub use key::{Key, KeyGroup, MergePolicy, ValueKind};
pub use memory::MemoryRequirement;
pub use values::{ColorStd, DataType, LayoutKind, Padding, ScanType};
