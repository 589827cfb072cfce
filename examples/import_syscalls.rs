//! Runs `N` (first argument, default 1000) object export+import round trips over a socketpair on
//! the host memfd path, for counting the syscalls of one import:
//!
//! ```text
//! cargo build --release --example import_syscalls
//! strace -c -f target/release/examples/import_syscalls 0
//! strace -c -f target/release/examples/import_syscalls 1000
//! ```
//!
//! The difference of the two tables, divided by `N`, is what one export+import costs.

use std::sync::Arc;
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::ipc::{Endpoint, Requested};
use unibuf::object::Object;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut l = AttrList::raw(1 << 20).unwrap();
    l.set_need_cpu_access(true)
        .unwrap()
        .set_required_perm(Permission::ReadWrite)
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap();
    let r = Arc::new(unibuf::reconcile::reconcile([&l]).unwrap());
    let obj = Object::allocate(&r).unwrap();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    for _ in 0..n {
        a.export_object(&obj, Permission::ReadWrite).unwrap();
        let o = b.import_object(Requested::ReadWrite, None).unwrap();
        std::hint::black_box(&o);
    }
}
