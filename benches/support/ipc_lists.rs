// Lists used by the IPC benchmarks (included by benches/ipc.rs).
//
// Until core's attribute lists are merged these are wire-level lists shaped like a three-plane
// image list (YUV420 planar 1920x1080: types, cpu access, permission, per-plane keys).

use unibuf::ipc::wire::{WireList, WireValue};
use unibuf::ipc::Endpoint;

pub type BenchList = Vec<WireList>;

pub fn three_plane_image_list() -> BenchList {
    let mut l = WireList::default();
    let mut k = 0u16;
    let mut push = |v: WireValue| {
        k += 1;
        l.push(k, v).unwrap();
    };
    push(WireValue::U64(2)); // buffer type: image
    push(WireValue::Bool(true)); // need cpu access
    push(WireValue::U64(1)); // required permission
    push(WireValue::Bool(true)); // enable cpu cache
    push(WireValue::U64(0)); // layout: pitch linear
    push(WireValue::U64(1)); // scan type
    push(WireValue::U64(3)); // plane count
    let planes = |f: &dyn Fn(u64) -> WireValue| WireValue::Array((0..3).map(f).collect());
    push(planes(&|i| WireValue::U64(if i == 0 { 0x3838_5559 } else { 0x3855_5559 })));
    push(planes(&|i| WireValue::U64(if i == 0 { 1920 } else { 960 })));
    push(planes(&|i| WireValue::U64(if i == 0 { 1080 } else { 540 })));
    push(planes(&|_| WireValue::U64(8)));
    push(planes(&|_| WireValue::U64(256)));
    push(planes(&|_| WireValue::U64(0)));
    push(WireValue::U64(4096)); // base alignment
    push(WireValue::Str("camera0".into()));
    vec![l]
}

pub fn reconciled_image_list() -> WireList {
    three_plane_image_list().remove(0)
}

pub fn export(ep: &mut Endpoint, l: &BenchList) {
    ep.send_wire_lists(l).unwrap();
}

pub fn import(ep: &mut Endpoint) -> BenchList {
    ep.recv_wire_lists().unwrap()
}
