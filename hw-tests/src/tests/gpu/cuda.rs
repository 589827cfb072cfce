//! CUDA tests: unibuf objects imported into CUDA, read-only enforced by the GPU's MMU, GPU-resident
//! memory across processes.

use crate::harness::Test;

/// The CUDA tests.
pub fn tests() -> Vec<Test> {
    vec![]
}
