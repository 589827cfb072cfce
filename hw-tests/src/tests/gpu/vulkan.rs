//! Vulkan tests: images over unibuf layouts, the pitch rule, the GPU id.

use crate::harness::Test;

/// The Vulkan tests.
pub fn tests() -> Vec<Test> {
    vec![]
}
