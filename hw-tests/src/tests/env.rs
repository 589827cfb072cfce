//! Hardware tests: env.

use crate::harness::Test;

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![]
}
