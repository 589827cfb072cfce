//! The contract between reconciliation and the backends: what must be allocated.

use crate::attr::Permission;
use crate::reconcile::{truncate_name, Reconciled};

pub use crate::model::MemoryRequirement;

/// Everything a backend needs to allocate one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocRequest {
    /// Size in bytes (the reconciled buffer size; backends round up to pages).
    pub size: u64,
    /// Required base-address alignment in bytes (a power of two).
    pub alignment: u64,
    /// The permission the allocating handle holds (the highest any list required).
    pub permission: Permission,
    /// Some accessor needs CPU access.
    pub cpu_access: bool,
    /// CPU caching is wanted.
    pub cpu_cache: bool,
    /// What the memory must be.
    pub memory: MemoryRequirement,
    /// Name given to the buffer with `DMA_BUF_SET_NAME` (at most 31 bytes; longer is truncated).
    pub name: String,
}

impl AllocRequest {
    /// What a backend needs to allocate the buffer of `r`. The name is `name` if given, else
    /// the accessor names joined by `+` (or `unibuf` when no list is named), cut to 31 bytes at
    /// a character boundary.
    ///
    /// Built here, on the backend side, so that reconciliation never imports the backends.
    pub fn from_reconciled(r: &Reconciled, name: Option<&str>) -> AllocRequest {
        let name = name.unwrap_or_else(|| r.derived_name());
        AllocRequest {
            size: r.size(),
            alignment: r.alignment(),
            permission: r.permission(),
            cpu_access: r.need_cpu_access(),
            cpu_cache: r.cpu_cache(),
            memory: r.memory().clone(),
            name: truncate_name(name, 31),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{AccessorKind, AttrList};
    use crate::layout::PixelFormat;
    use crate::reconcile::reconcile;

    #[test]
    fn request_carries_the_reconciled_size_and_names() {
        let mut cam = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
        cam.set_accessor_name("camera").unwrap();
        let mut disp = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
        disp.set_accessor_name("display").unwrap();
        disp.set_pitch_align(256).unwrap();
        let r = reconcile([&cam, &disp]).unwrap();
        let req = AllocRequest::from_reconciled(&r, None);
        assert_eq!(req.name, "camera+display");
        assert_eq!(req.size, r.size());
        assert_eq!(req.alignment, r.alignment());
        assert_eq!(req.permission, r.permission());
        assert_eq!(&req.memory, r.memory());
    }

    #[test]
    fn unnamed_lists_give_unibuf_and_long_names_are_cut() {
        let mut a = AttrList::raw(4096).unwrap();
        a.set_accessor_kind(AccessorKind::Cpu).unwrap();
        a.set_required_perm(Permission::ReadOnly).unwrap();
        let r = reconcile([&a]).unwrap();
        assert_eq!(AllocRequest::from_reconciled(&r, None).name, "unibuf");
        assert_eq!(
            AllocRequest::from_reconciled(
                &r,
                Some("a-very-long-buffer-name-that-exceeds-31-bytes")
            )
            .name
            .len(),
            31
        );
    }
}
