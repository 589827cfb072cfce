//! Hardware tests: v4l2.

use crate::harness::Test;

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![]
}
