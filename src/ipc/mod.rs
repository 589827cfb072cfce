//! Sharing lists and objects across processes over Unix domain sockets.
//!
//! (Placeholder: the IPC work fills this module.)
