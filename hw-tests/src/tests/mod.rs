//! All hardware tests, one module per area; each module owns its `tests()` list.

use crate::harness::Test;

mod backend;
mod capi;
mod conformance;
mod drm;
mod env;
#[cfg(feature = "gpu")]
mod gpu;
mod ipc;
mod stream;
mod udev;
mod v4l2;
mod vfio;

/// Every test, in run order: the environment first, so a broken VM shows before anything else.
pub fn all() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(env::tests());
    v.extend(conformance::tests());
    v.extend(backend::tests());
    v.extend(ipc::tests());
    v.extend(v4l2::tests());
    v.extend(drm::tests());
    v.extend(stream::tests());
    v.extend(stream::pipeline_tests());
    v.extend(vfio::tests());
    #[cfg(feature = "gpu")]
    v.extend(gpu::tests());
    v.extend(capi::tests());
    v.extend(udev::tests());
    v
}
