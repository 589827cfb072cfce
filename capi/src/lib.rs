//! The C API of unibuf (`libunibuf`, header `include/unibuf.h`), in the shape of NvSciBuf.
//!
//! Every function is `ub_*`, returns a [`status::ub_status`] (or a value that cannot fail),
//! takes opaque handles (module `handle`) checked against a registry of live handles, checks every
//! pointer and length it gets, and runs its body under `catch_unwind`: no panic crosses into C.
//! A failure leaves a message on the calling thread (`ub_last_error_message`).
//!
//! The functions call the Rust library through the module `adapt`, so changes of the Rust API meet the C
//! API in one place. See `docs/c-api.md` for the porting table from NvSciBuf.
#![allow(non_camel_case_types)]
// The C ABI is the documentation's subject; the header carries these docs.
#![allow(clippy::missing_safety_doc)]

pub(crate) mod adapt;
pub mod attr;
pub mod consts;
pub mod ffi;
pub(crate) mod handle;
pub mod ipc;
pub mod keys;
pub mod object;
pub mod provider;
pub mod status;

pub use handle::ub_live_handle_count;

#[cfg(test)]
mod tests;
