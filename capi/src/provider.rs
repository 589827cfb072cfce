//! Constraint providers as fill-this-list calls: the counterpart of
//! `NvMediaImageFillNvSciBufAttrs`. Each asks a real device what it needs and adds it to an
//! unreconciled list: all the keys, or (on a refusal, e.g. a key the caller already set to
//! another value) none.

use crate::attr::{ub_attr_list, unrec_of};
use crate::ffi;
use crate::object::perm_arg;
use crate::status::{guard, ub_status, Fail, R};
use std::ffi::c_char;
use unibuf_rs::attr::{AttrList, Permission};
use unibuf_rs::interop::{drm, gpu, v4l2, vfio};

/// Asks the device (`query`, without holding the list's lock: device I/O can be slow, and
/// reconcile or export of this list must not wait for it), then applies the answer to a copy of
/// the list (`apply`, under the lock) and stores the copy only when `apply` succeeded.
fn fill<Q>(
    list: *mut ub_attr_list,
    what: &str,
    query: impl FnOnce() -> R<Q>,
    apply: impl FnOnce(&mut AttrList, Q) -> R<()>,
) -> R<()> {
    let u = unrec_of(list, what)?;
    let q = query()?;
    u.modify(|l| apply(l, q))
}

/// Sets every key of `from` in `to`, skipping keys `to` already has with the same value.
fn merge(to: &mut AttrList, from: &AttrList) -> R<()> {
    let kv: Vec<_> = from
        .iter()
        .filter(|(k, v)| to.get(*k) != Some(*v))
        .map(|(k, v)| (k, v.clone()))
        .collect();
    Ok(to.set_all(kv)?)
}

/// Fills `list` with what the V4L2 video node `node` (`/dev/video0`) needs for a `width` x
/// `height` image of V4L2 pixel format `v4l2_fourcc` (`VIDIOC_TRY_FMT`: bytesperline and
/// sizeimage become the minimum pitch and size; the accessor is a camera). Thread-safe.
///
/// # Safety
/// `node` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ub_v4l2_fill_attr_list(
    node: *const c_char,
    v4l2_fourcc: u32,
    width: u32,
    height: u32,
    list: *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_v4l2_fill_attr_list";
        // SAFETY: the caller's contract.
        let node = unsafe { ffi::string(node, what, "node") }?;
        fill(
            list,
            what,
            || {
                let c = v4l2::VideoNode::open(node)?.try_format(v4l2_fourcc, width, height)?;
                Ok(c.attr_list()?)
            },
            |l, c| merge(l, &c),
        )
    })
}

/// Fills `list` with what a plane of the DRM card `card` (`/dev/dri/card0`) needs to scan out a
/// `width` x `height` image of DRM format `drm_fourcc`: the format, a modifier the plane takes
/// (linear when it can), the pitch alignment. `plane_id` is a DRM plane object id, or 0 for the
/// card's first primary plane. Thread-safe.
///
/// # Safety
/// `card` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ub_drm_plane_fill_attr_list(
    card: *const c_char,
    plane_id: u32,
    drm_fourcc: u32,
    width: u32,
    height: u32,
    list: *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_drm_plane_fill_attr_list";
        // SAFETY: the caller's contract.
        let path = unsafe { ffi::string(card, what, "card") }?;
        let query = || -> R<AttrList> {
            let c = drm::Card::open(path)?;
            // Without DRM_CLIENT_CAP_UNIVERSAL_PLANES the kernel lists overlay planes only, and
            // plane 0 (the first primary) would never be found.
            ::drm::Device::set_client_capability(
                &c,
                ::drm::ClientCapability::UniversalPlanes,
                true,
            )
            .map_err(|e| {
                unibuf_rs::Error::sys(
                    "DRM_CLIENT_CAP_UNIVERSAL_PLANES",
                    path,
                    rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
                )
            })?;
            let planes = c.planes()?;
            let plane = planes
                .iter()
                .find(|(h, t)| {
                    if plane_id == 0 {
                        *t == ::drm::control::PlaneType::Primary
                    } else {
                        u32::from(*h) == plane_id
                    }
                })
                .map(|(h, _)| *h)
                .ok_or_else(|| {
                    Fail::new(
                        crate::status::UB_ERR_NOT_SUPPORTED,
                        format!(
                            "{what}: {path} has no plane {plane_id} (0: the first primary plane)"
                        ),
                    )
                })?;
            let cons = c.plane_constraints(plane)?;
            Ok(cons.attr_list(drm_fourcc, width, height)?)
        };
        fill(list, what, query, |l, c| merge(l, &c))
    })
}

/// Fills `list` (whose buffer type is set) with what the VFIO-bound PCI device `bdf`
/// (`0000:00:03.0`) needs: accessor kind VFIO (so the memory is pinnable, memfd-backed),
/// contiguity when it sits in no IOMMU group, the IOMMU page alignment, and the DMA
/// `permission` it needs. `dma_mask_bits` is the device's DMA addressing width. Thread-safe.
///
/// # Safety
/// `bdf` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ub_vfio_fill_attr_list(
    bdf: *const c_char,
    dma_mask_bits: u32,
    permission: u32,
    list: *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_vfio_fill_attr_list";
        // SAFETY: the caller's contract.
        let bdf = unsafe { ffi::string(bdf, what, "bdf") }?;
        let perm = perm_arg(permission, what, false)?.unwrap_or(Permission::ReadOnly);
        fill(
            list,
            what,
            || Ok(vfio::VfioConstraints::probe(bdf, dma_mask_bits)?),
            |l, c| Ok(c.fill(l, perm)?),
        )
    })
}

/// Fills `list` (whose buffer type is set) with what a GPU needs: accessor kind GPU, its id
/// `gpu_uuid` (`"GPU-xxxxxxxx-..."` as `nvidia-smi -L` prints, or the bare UUID), the base
/// `alignment` and, for images, `pitch_alignment` (powers of two). Thread-safe.
///
/// # Safety
/// `gpu_uuid` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ub_gpu_fill_attr_list(
    gpu_uuid: *const c_char,
    alignment: u64,
    pitch_alignment: u32,
    list: *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_gpu_fill_attr_list";
        // SAFETY: the caller's contract.
        let id = unsafe { ffi::string(gpu_uuid, what, "gpu_uuid") }?;
        fill(
            list,
            what,
            || {
                Ok(gpu::GpuConstraints::new(
                    gpu::GpuId::parse(id).map_err(unibuf_rs::Error::from)?,
                    alignment,
                    pitch_alignment,
                )?)
            },
            |l, g| Ok(g.fill(l)?),
        )
    })
}
