//! Buffer objects: a dma-buf (or memfd) fd, its reconciled list, and this handle's permission.
//!
//! (Placeholder: the backend work fills this module.)
