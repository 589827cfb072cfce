//! The vocabulary every other module shares: permissions, accessor and backend kinds, attribute
//! keys, the small value enums, the pixel format table, and the memory requirement.
//!
//! A leaf: it imports nothing else of the crate, so [`crate::attr`], [`crate::layout`],
//! [`crate::reconcile`] and [`crate::backend`] can all build on it without importing each
//! other in a circle (`tests/module_graph.rs` checks the arrows). Its items are re-exported
//! where users look for them: `unibuf::attr::{Permission, Key, DataType, ...}`,
//! `unibuf::layout::{PixelFormat, format}` and `unibuf::backend::MemoryRequirement`.

/// Defines an enum with a stable wire code and a name per variant: the single source of truth
/// for the codes that travel in attribute values and IPC headers (as `keys!` is for keys).
///
/// Generates `ALL` (declaration order), `code`, `from_code`, `name`, `from_name` and `Display`
/// (the name). `Name (underscore_for_dash) { .. }` makes `from_name` also accept `_` for `-`.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($body:tt)* }) => {
        wire_enum!(@def [$(#[$m])*] $name false { $($body)* });
    };
    ($(#[$m:meta])* $name:ident (underscore_for_dash) { $($body:tt)* }) => {
        wire_enum!(@def [$(#[$m])*] $name true { $($body)* });
    };
    (@def [$(#[$m:meta])*] $name:ident $lenient:literal {
        $( $(#[$vm:meta])* $v:ident = $code:literal, $text:literal; )*
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $( $(#[$vm])* $v, )* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$(stringify!($v)),*].len()] = [ $( $name::$v, )* ];

            /// Stable wire code.
            pub const fn code(self) -> u32 {
                match self { $( $name::$v => $code, )* }
            }

            /// The value with this wire code.
            pub const fn from_code(c: u32) -> Option<Self> {
                match c { $( $code => Some($name::$v), )* _ => None }
            }

            /// Name used in files, dumps and messages.
            pub const fn name(self) -> &'static str {
                match self { $( $name::$v => $text, )* }
            }

            /// The value with this name.
            pub fn from_name(s: &str) -> Option<Self> {
                let s = if $lenient { s.replace('_', "-") } else { s.to_string() };
                Self::ALL.into_iter().find(|v| v.name() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

mod common;
pub mod format;
mod gpu;
mod key;
mod memory;
pub mod modifier;
mod values;

pub use common::{AccessorKind, BackendKind, Permission};
pub use format::{PixelFormat, UnknownFormat};
pub use gpu::{BadGpuId, GpuId};
pub use key::{Key, KeyGroup, MergePolicy, ValueKind};
pub use memory::MemoryRequirement;
pub use modifier::ModifierUsage;
pub use values::{ColorStd, DataType, LayoutKind, Padding, ScanType};
