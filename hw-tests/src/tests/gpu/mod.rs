//! GPU tests (feature `gpu`): CUDA and Vulkan on a real NVIDIA GPU. `scripts/gpu-test` builds them
//! here and runs them on the GPU machine; elsewhere each test is skipped with the reason (no
//! `libcuda.so.1`, no Vulkan loader, no device).

use crate::harness::Test;

mod cuda;
pub(crate) mod support;
mod vulkan;

/// Every GPU test.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(cuda::tests());
    v.extend(vulkan::tests());
    v
}
