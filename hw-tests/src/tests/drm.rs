//! Hardware tests: drm.

use crate::harness::Test;

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![]
}
