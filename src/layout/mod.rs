//! Buffer layouts computed by reconciliation: planes, tensors, arrays, pyramids, and the format table.
//!
//! (Placeholder: the core-model work fills this module.)
