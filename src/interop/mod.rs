//! Constraint providers and importers for real devices: DRM/KMS, V4L2, VFIO, GPUs.
//!
//! (Placeholder: the device work fills this module.)
