//! CPU mappings of objects, bracketed by `DMA_BUF_IOCTL_SYNC`.
//!
//! (Placeholder: the backend work fills this module.)
