// Lists used by the IPC benchmarks (included by benches/ipc.rs): a three-plane image list
// (YUV420 1920x1080, as a camera states it) and a reconciled list of a CPU producer and viewer.

use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::ipc::Endpoint;
use unibuf::layout::PixelFormat;
use unibuf::reconcile::{reconcile, Reconciled};

pub fn three_plane_image_list() -> AttrList {
    let mut l = AttrList::image(PixelFormat::Yuv420, 1920, 1080).unwrap();
    l.set_accessor_name("camera")
        .unwrap()
        .set_accessor_kind(AccessorKind::Camera)
        .unwrap()
        .set_required_perm(Permission::ReadWrite)
        .unwrap()
        .set_pitch_align(256)
        .unwrap()
        .set_base_align(4096)
        .unwrap()
        .set_need_cpu_access(true)
        .unwrap();
    l
}

/// A CPU producer and a CPU viewer of the image (memfd is enough, so objects can be allocated
/// on any machine).
pub fn reconciled_image() -> std::sync::Arc<Reconciled> {
    let mut producer = AttrList::image(PixelFormat::Yuv420, 1920, 1080).unwrap();
    producer
        .set_accessor_name("producer")
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_required_perm(Permission::ReadWrite)
        .unwrap()
        .set_pitch_align(256)
        .unwrap()
        .set_need_cpu_access(true)
        .unwrap();
    let mut viewer = AttrList::image(PixelFormat::Yuv420, 1920, 1080).unwrap();
    viewer
        .set_accessor_name("viewer")
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_need_cpu_access(true)
        .unwrap()
        .set_required_perm(Permission::ReadOnly)
        .unwrap();
    std::sync::Arc::new(reconcile(&[producer, viewer]).unwrap())
}

pub fn export(ep: &mut Endpoint, l: &AttrList) {
    ep.export_lists(std::slice::from_ref(l)).unwrap();
}

pub fn import(ep: &mut Endpoint) -> unibuf::ipc::ImportedLists {
    ep.import_lists().unwrap()
}
