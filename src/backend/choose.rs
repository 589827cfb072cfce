//! Backend choice: which backend serves a [`MemoryRequirement`] on this machine, and why.
//!
//! The rules, in order:
//!
//! 0. `vidmem_gpu` set → the `cuda-vidmem` backend on the CUDA device with that UUID (feature
//!    `cuda`); without the feature, without CUDA or without that GPU, an error naming what is
//!    missing: GPU memory never falls back to host memory. Contiguous or pinnable memory, or a
//!    preferred backend other than `cuda-vidmem`, is refused beside it;
//! 1. contiguous and pinnable at once → refused (no backend gives both);
//! 2. a preferred-backend hint is honored when it is compatible with the requirement and usable
//!    here; an incompatible hint is refused with the reason (an error); a compatible hint that
//!    this machine cannot serve falls back to the rules below, and the choice records why;
//! 3. contiguous → a CMA heap;
//! 4. pinnable (VFIO) → udmabuf over a memfd the object keeps;
//! 5. otherwise the system heap, then udmabuf, then DRM dumb buffers; then a plain memfd, only
//!    when no accessor is a device; then a CMA heap as the last provider;
//! 6. otherwise an error naming what is missing and why each candidate was unusable.

use super::discover::{Backends, HeapClass};
use super::request::MemoryRequirement;
use crate::attr::{BackendKind, GpuId};
use crate::error::{Error, Result};
use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Memoized [`Choice`]s of one [`Backends`], one slot per distinct [`MemoryRequirement`]
/// (2 × 2 × 2 flags × one slot per hint and one for none): allocation looks its choice up instead of walking the rules and
/// cloning a device path every time. Only successful choices are kept; a refusal is recomputed
/// (and its reason rebuilt) each time it is asked for.
pub(crate) struct ChoiceCache([OnceLock<Arc<Choice>>; CACHE_SLOTS]);

const CACHE_SLOTS: usize = 8 * (BackendKind::ALL.len() + 1);

impl Default for ChoiceCache {
    fn default() -> Self {
        ChoiceCache(std::array::from_fn(|_| OnceLock::new()))
    }
}

impl fmt::Debug for ChoiceCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.iter().filter(|s| s.get().is_some()).count();
        write!(f, "ChoiceCache({n} memoized)")
    }
}

#[inline]
/// The cache slot of `m`. Destructures every field, so a new field in [`MemoryRequirement`]
/// does not compile until it is part of the key.
fn slot(m: &MemoryRequirement) -> usize {
    let MemoryRequirement {
        contiguous,
        pinnable,
        device_access,
        preferred,
        // Never memoized: `choose_shared` answers a video-memory request before the cache.
        vidmem: _,
    } = *m;
    let hint = match preferred {
        None => 0,
        Some(p) => 1 + BackendKind::ALL.iter().position(|k| *k == p).unwrap_or(0),
    };
    usize::from(contiguous)
        | usize::from(pinnable) << 1
        | usize::from(device_access) << 2
        | hint << 3
}

/// A backend chosen for a requirement, with the device it allocates from and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The backend.
    pub backend: BackendKind,
    /// The device node allocated from (heap, `/dev/udmabuf`, DRM card); `None` for memfd and
    /// `cuda-vidmem`.
    pub device: Option<PathBuf>,
    /// The GPU whose memory is allocated (`cuda-vidmem`: the list's `vidmem_gpu`).
    pub gpu: Option<GpuId>,
    /// Why this backend (and why not a preferred one, if a hint was not honored).
    pub reason: Cow<'static, str>,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.backend)?;
        if let Some(d) = &self.device {
            write!(f, " ({})", d.display())?;
        }
        if let Some(g) = &self.gpu {
            write!(f, " (GPU {g})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why `kind` cannot satisfy `m` (whatever this machine has), or `None` when it can.
pub fn incompatibility(kind: BackendKind, m: &MemoryRequirement) -> Option<&'static str> {
    match (m.vidmem.is_some(), kind == BackendKind::CudaVidmem) {
        (true, false) => {
            return Some(
                "the lists ask for GPU video memory (vidmem_gpu), which only the cuda-vidmem \
                 backend gives",
            )
        }
        (false, true) => {
            return Some(
                "cuda-vidmem allocates the video memory of the GPU a list names in vidmem_gpu, \
                 and no list sets it",
            )
        }
        (true, true) if m.contiguous => {
            return Some("GPU video memory is not physically contiguous host memory")
        }
        (true, true) if m.pinnable => {
            return Some(
                "a VFIO accessor pins host memory, and GPU video memory is not host memory",
            )
        }
        (true, true) => return None,
        (false, false) => {}
    }
    if m.contiguous && kind != BackendKind::CmaHeap {
        return Some("an accessor needs physically contiguous memory and only a CMA heap gives it");
    }
    let cpu_only_memfd = kind == BackendKind::Memfd && !m.device_access;
    if m.pinnable && kind != BackendKind::Udmabuf && !cpu_only_memfd {
        return Some(
            "a VFIO accessor pins the memory, and only memfd-backed memory (udmabuf) can be pinned \
             (heap and DRM dma-buf mappings are VM_PFNMAP)",
        );
    }
    if m.device_access && !kind.is_dma_buf() {
        return Some("a device accessor needs a dma-buf, and a plain memfd is not one");
    }
    None
}

impl Backends {
    /// The device node `kind` would allocate from here.
    fn device_of(&self, kind: BackendKind) -> Option<PathBuf> {
        match kind {
            BackendKind::SystemHeap => self.heap(HeapClass::System).map(|h| h.path.clone()),
            BackendKind::CmaHeap => self.heap(HeapClass::Contiguous).map(|h| h.path.clone()),
            BackendKind::Udmabuf => Some(self.udmabuf.path.clone()),
            BackendKind::DrmDumb => self.drm_dumb().map(|d| d.path.clone()),
            BackendKind::Memfd | BackendKind::CudaVidmem => None,
        }
    }

    fn pick(&self, backend: BackendKind, reason: Cow<'static, str>) -> Choice {
        Choice {
            backend,
            device: self.device_of(backend),
            gpu: None,
            reason,
        }
    }

    /// [`Backends::choose`], memoized: the first successful choice for a requirement is kept and
    /// shared (the same `Arc`) by every later call with an equal requirement. A `Backends` does
    /// not change once discovered (its [`super::Discovery`] is read-only), so a memoized choice
    /// cannot go stale.
    #[inline]
    pub fn choose_shared(&self, m: &MemoryRequirement) -> Result<Arc<Choice>> {
        if m.vidmem.is_some() {
            return self.choose(m).map(Arc::new);
        }
        let cell = &self.choices.0[slot(m)];
        if let Some(c) = cell.get() {
            return Ok(c.clone());
        }
        let c = Arc::new(self.choose(m)?);
        Ok(cell.get_or_init(|| c).clone())
    }

    /// Drops the memoized choices (tests that edit the discovery).
    #[cfg(test)]
    fn forget_choices(&mut self) {
        self.choices = ChoiceCache::default();
    }

    /// Chooses the backend for `m` (see the module documentation for the rules).
    pub fn choose(&self, m: &MemoryRequirement) -> Result<Choice> {
        if let Some(g) = m.vidmem {
            return choose_vidmem(g, m);
        }
        if m.contiguous && m.pinnable {
            return Err(Error::Unavailable {
                what: "memory both physically contiguous and pinnable by VFIO".into(),
                why: "a CMA heap's dma-buf cannot be pinned through VFIO type1 and udmabuf memory \
                      is not contiguous"
                    .into(),
            });
        }
        let mut hint_note = None;
        if let Some(p) = m.preferred {
            if let Some(why) = incompatibility(p, m) {
                return Err(Error::Unavailable {
                    what: format!("the preferred backend {p}"),
                    why: format!("refused: {why}"),
                });
            }
            if self.has(p) {
                return Ok(self.pick(p, Cow::Borrowed("preferred by the lists and compatible")));
            }
            hint_note = Some(format!(
                "preferred {p} is not usable here ({}); ",
                self.why_not(p)
            ));
        }
        let with_note = |reason: &'static str| -> Cow<'static, str> {
            match &hint_note {
                None => Cow::Borrowed(reason),
                Some(n) => Cow::Owned(format!("{n}{reason}")),
            }
        };
        if m.contiguous {
            if self.has(BackendKind::CmaHeap) {
                return Ok(self.pick(
                    BackendKind::CmaHeap,
                    with_note("an accessor needs physically contiguous memory"),
                ));
            }
            return Err(Error::Unavailable {
                what: "a contiguous (CMA) DMA-BUF heap".into(),
                why: format!(
                    "an accessor needs physically contiguous memory (a device without an IOMMU); {}",
                    self.why_not(BackendKind::CmaHeap)
                ),
            });
        }
        if m.pinnable {
            if self.has(BackendKind::Udmabuf) {
                return Ok(self.pick(
                    BackendKind::Udmabuf,
                    with_note("a VFIO accessor pins the memory: udmabuf over a memfd"),
                ));
            }
            if !m.device_access && self.has(BackendKind::Memfd) {
                return Ok(self.pick(
                    BackendKind::Memfd,
                    Cow::Owned(format!(
                        "{}a VFIO accessor pins the memory and no accessor imports a dma-buf: a \
                         memfd (udmabuf: {})",
                        hint_note.as_deref().unwrap_or(""),
                        self.why_not(BackendKind::Udmabuf)
                    )),
                ));
            }
            return Err(Error::Unavailable {
                what: "udmabuf (memfd-backed dma-buf that VFIO can pin)".into(),
                why: format!(
                    "a VFIO accessor pins the memory; {}",
                    self.why_not(BackendKind::Udmabuf)
                ),
            });
        }
        let chain: [(BackendKind, &'static str); 3] = [
            (BackendKind::SystemHeap, "no special needs: the system heap"),
            (
                BackendKind::Udmabuf,
                "no special needs and no usable system heap: udmabuf",
            ),
            (
                BackendKind::DrmDumb,
                "no special needs and no usable heap or udmabuf: DRM dumb buffer exported by PRIME",
            ),
        ];
        for (kind, reason) in chain {
            if self.has(kind) {
                return Ok(self.pick(kind, with_note(reason)));
            }
        }
        if !m.device_access && self.has(BackendKind::Memfd) {
            return Ok(self.pick(
                BackendKind::Memfd,
                with_note("CPU-only lists and no dma-buf provider: a plain memfd"),
            ));
        }
        if self.has(BackendKind::CmaHeap) {
            return Ok(self.pick(
                BackendKind::CmaHeap,
                with_note(
                    "the only provider here is a CMA heap (contiguous memory although not \
                     required)",
                ),
            ));
        }
        let why = [
            BackendKind::SystemHeap,
            BackendKind::Udmabuf,
            BackendKind::DrmDumb,
            BackendKind::CmaHeap,
        ]
        .iter()
        .map(|k| format!("{k}: {}", self.why_not(*k)))
        .collect::<Vec<_>>()
        .join("; ");
        if m.device_access {
            Err(Error::Unavailable {
                what: "a dma-buf provider (system heap, udmabuf or DRM dumb buffers)".into(),
                why: format!("a device accessor needs a dma-buf; {why}"),
            })
        } else {
            Err(Error::Unavailable {
                what: "any memory backend".into(),
                why: format!("{why}; memfd: {}", self.why_not(BackendKind::Memfd)),
            })
        }
    }
}

/// What [`Backends::why_not`] says of `cuda-vidmem`, which no list gets as a hint of its own.
pub(crate) fn vidmem_note() -> &'static str {
    if cfg!(feature = "cuda") {
        "chosen only for lists that set vidmem_gpu, on the CUDA device with that UUID"
    } else {
        "this build has no cuda-vidmem backend (feature cuda); it is chosen only for lists that \
         set vidmem_gpu"
    }
}

/// Rule 0: the `cuda-vidmem` backend for the video memory of GPU `g`, or why not.
fn choose_vidmem(g: GpuId, m: &MemoryRequirement) -> Result<Choice> {
    if let Some(why) = m
        .preferred
        .and_then(|p| incompatibility(p, m))
        .or_else(|| incompatibility(BackendKind::CudaVidmem, m))
    {
        return Err(Error::Unavailable {
            what: format!("the video memory of GPU {g} (vidmem_gpu)"),
            why: format!("refused: {why}"),
        });
    }
    #[cfg(feature = "cuda")]
    {
        let (_, label) = super::cuda::find_device(g)?;
        Ok(Choice {
            backend: BackendKind::CudaVidmem,
            device: None,
            gpu: Some(g),
            reason: Cow::Owned(format!(
                "the lists ask for the video memory of GPU {g} (vidmem_gpu): {label}, \
                 cuMemCreate with a POSIX-fd shareable handle"
            )),
        })
    }
    #[cfg(not(feature = "cuda"))]
    Err(Error::Unavailable {
        what: "cuda-vidmem backend (feature cuda)".into(),
        why: format!(
            "the lists ask for the video memory of GPU {g} (vidmem_gpu); this build has no CUDA \
             support and allocates host memory only (build unibuf with feature cuda)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::discover::{Access, Discovery, DrmInfo, HeapInfo, UdmabufInfo};

    /// Backends with the given kinds marked usable (no fds: choice never touches them).
    fn with(kinds: &[BackendKind]) -> Backends {
        let usable = |k| {
            if kinds.contains(&k) {
                Access::Usable
            } else {
                Access::Absent("not in this test".into())
            }
        };
        let heap = |name: &str, class, k| HeapInfo {
            name: name.into(),
            path: PathBuf::from(format!("/dev/dma_heap/{name}")),
            class,
            class_reason: "test",
            access: usable(k),
            fd: None,
        };
        Backends::from_discovery(Discovery {
            heaps: vec![
                heap("reserved", HeapClass::Contiguous, BackendKind::CmaHeap),
                heap("system", HeapClass::System, BackendKind::SystemHeap),
            ],
            udmabuf: UdmabufInfo {
                path: "/dev/udmabuf".into(),
                access: usable(BackendKind::Udmabuf),
                fd: None,
            },
            drm: vec![DrmInfo {
                path: "/dev/dri/card0".into(),
                driver: Some("vgem".into()),
                access: usable(BackendKind::DrmDumb),
                card: None,
            }],
            memfd: usable(BackendKind::Memfd),
            heap_dir: Access::Usable,
            dri_dir: Access::Usable,
        })
    }

    fn req(contiguous: bool, pinnable: bool, device: bool) -> MemoryRequirement {
        MemoryRequirement {
            contiguous,
            pinnable,
            device_access: device,
            preferred: None,
            vidmem: None,
        }
    }

    use BackendKind::*;

    #[test]
    fn plain_device_buffer_walks_the_chain() {
        let m = req(false, false, true);
        assert_eq!(
            with(&BackendKind::ALL).choose(&m).unwrap().backend,
            SystemHeap
        );
        assert_eq!(
            with(&[Udmabuf, DrmDumb, Memfd]).choose(&m).unwrap().backend,
            Udmabuf
        );
        assert_eq!(with(&[DrmDumb, Memfd]).choose(&m).unwrap().backend, DrmDumb);
        assert_eq!(with(&[CmaHeap, Memfd]).choose(&m).unwrap().backend, CmaHeap);
        let e = with(&[Memfd]).choose(&m).unwrap_err().to_string();
        assert!(e.contains("dma-buf provider"), "{e}");
        assert!(e.contains("/dev/udmabuf"), "{e}");
    }

    #[test]
    fn contiguous_needs_cma() {
        let m = req(true, false, true);
        let c = with(&BackendKind::ALL).choose(&m).unwrap();
        assert_eq!(c.backend, CmaHeap);
        assert_eq!(
            c.device.as_deref(),
            Some(std::path::Path::new("/dev/dma_heap/reserved"))
        );
        let e = with(&[SystemHeap, Udmabuf])
            .choose(&m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("contiguous"), "{e}");
    }

    #[test]
    fn pinnable_needs_udmabuf() {
        let m = req(false, true, true);
        assert_eq!(with(&BackendKind::ALL).choose(&m).unwrap().backend, Udmabuf);
        let e = with(&[SystemHeap, CmaHeap, DrmDumb, Memfd])
            .choose(&m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("udmabuf"), "{e}");
        assert!(with(&BackendKind::ALL)
            .choose(&req(true, true, true))
            .is_err());
    }

    #[test]
    fn cpu_only_falls_back_to_memfd() {
        let m = req(false, false, false);
        assert_eq!(
            with(&BackendKind::ALL).choose(&m).unwrap().backend,
            SystemHeap
        );
        let c = with(&[Memfd, CmaHeap]).choose(&m).unwrap();
        assert_eq!(c.backend, Memfd);
        assert!(c.reason.contains("CPU-only"), "{}", c.reason);
    }

    #[test]
    fn preferred_hint_honored_refused_or_unavailable() {
        let mut m = req(false, false, true);
        m.preferred = Some(DrmDumb);
        let c = with(&BackendKind::ALL).choose(&m).unwrap();
        assert_eq!(c.backend, DrmDumb);
        assert!(c.reason.contains("preferred"));
        // Compatible but missing here: falls back, and says why.
        let c = with(&[SystemHeap]).choose(&m).unwrap();
        assert_eq!(c.backend, SystemHeap);
        assert!(
            c.reason.contains("preferred drm-dumb is not usable"),
            "{}",
            c.reason
        );
        // Incompatible: refused with the reason.
        m.preferred = Some(Memfd);
        let e = with(&BackendKind::ALL).choose(&m).unwrap_err().to_string();
        assert!(e.contains("refused") && e.contains("dma-buf"), "{e}");
        let mut m = req(true, false, true);
        m.preferred = Some(SystemHeap);
        let e = with(&BackendKind::ALL).choose(&m).unwrap_err().to_string();
        assert!(e.contains("contiguous"), "{e}");
        // A CPU-only list may ask for memfd.
        let mut m = req(false, false, false);
        m.preferred = Some(Memfd);
        assert_eq!(with(&BackendKind::ALL).choose(&m).unwrap().backend, Memfd);
    }

    #[test]
    fn shared_choice_is_memoized_per_requirement_and_equals_choose() {
        let mut b = with(&BackendKind::ALL);
        let dev = req(false, false, true);
        let cpu = req(false, false, false);
        let a1 = b.choose_shared(&dev).unwrap();
        let a2 = b.choose_shared(&dev).unwrap();
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_eq!(*a1, b.choose(&dev).unwrap());
        let mut hinted = cpu.clone();
        hinted.preferred = Some(Memfd);
        let c = b.choose_shared(&hinted).unwrap();
        assert_eq!(c.backend, Memfd);
        assert!(!Arc::ptr_eq(&a1, &c));
        // Refusals are not memoized.
        assert!(b.choose_shared(&req(true, true, true)).is_err());
        // After editing the backends, forgetting the memo gives the new choice.
        b.disc.heaps.clear();
        b.forget_choices();
        assert_eq!(b.choose_shared(&dev).unwrap().backend, Udmabuf);
    }

    /// A contiguous request on a kernel whose only heap is the system heap: the refusal names
    /// the heaps this kernel has.
    #[test]
    fn missing_heap_names_the_heaps_this_kernel_has() {
        let mut b = with(&[SystemHeap, Memfd]);
        b.disc.heaps.retain(|h| h.name == "system");
        b.forget_choices();
        let e = b.choose(&req(true, false, true)).unwrap_err().to_string();
        assert!(e.contains("no contiguous (CMA) heap"), "{e}");
        assert!(e.contains("heaps found: system"), "{e}");
        let mut m = req(false, false, true);
        m.preferred = Some(CmaHeap);
        let c = b.choose(&m).unwrap();
        assert!(c.reason.contains("heaps found: system"), "{}", c.reason);
    }

    /// vidmem_gpu: never host memory. Without feature cuda the refusal names the backend and
    /// the feature; with it (and no such GPU here: no machine has this UUID) it names the GPU
    /// and why it is not here. Hints and needs that GPU memory cannot meet are refused first.
    #[test]
    fn vidmem_needs_the_cuda_backend_and_that_gpu() {
        let mut m = req(false, false, true);
        m.vidmem = Some(crate::model::GpuId([3; 16]));
        let b = with(&BackendKind::ALL);
        for e in [b.choose(&m).unwrap_err(), b.choose_shared(&m).unwrap_err()] {
            let t = e.to_string();
            assert!(t.contains("03030303-0303"), "{t}");
            if cfg!(feature = "cuda") {
                assert!(t.contains("cuda-vidmem backend"), "{t}");
                assert!(
                    t.contains("no CUDA device here has that UUID") || t.contains("libcuda"),
                    "{t}"
                );
            } else {
                assert!(t.contains("cuda-vidmem backend (feature cuda)"), "{t}");
            }
        }
        let mut hinted = m.clone();
        hinted.preferred = Some(SystemHeap);
        let t = b.choose(&hinted).unwrap_err().to_string();
        assert!(
            t.contains("refused") && t.contains("only the cuda-vidmem"),
            "{t}"
        );
        let mut pinned = m.clone();
        pinned.pinnable = true;
        let t = b.choose(&pinned).unwrap_err().to_string();
        assert!(t.contains("refused") && t.contains("VFIO"), "{t}");
        // A cuda-vidmem hint without vidmem_gpu is refused, naming the key.
        let mut m = req(false, false, true);
        m.preferred = Some(CudaVidmem);
        let t = b.choose(&m).unwrap_err().to_string();
        assert!(t.contains("vidmem_gpu"), "{t}");
        assert!(!b.has(CudaVidmem));
    }

    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = BackendKind> {
        prop::sample::select(BackendKind::ALL.to_vec())
    }

    proptest! {
        /// Whatever the machine has and the lists need: a choice is usable and compatible, a
        /// compatible usable hint is honored, and a refusal means nothing usable fits.
        #[test]
        fn choice_is_usable_compatible_and_refusals_are_justified(
            have in prop::collection::vec(kind(), 0..5),
            contiguous: bool, pinnable: bool, device: bool,
            preferred in prop::option::of(kind()),
        ) {
            let b = with(&have);
            let m = MemoryRequirement { contiguous, pinnable, device_access: device, preferred, vidmem: None };
            match b.choose(&m) {
                Ok(c) => {
                    prop_assert!(b.has(c.backend));
                    prop_assert_eq!(incompatibility(c.backend, &m), None);
                    if let Some(p) = preferred {
                        if b.has(p) {
                            prop_assert_eq!(c.backend, p);
                        }
                    }
                }
                Err(e) => {
                    let hint_refused = preferred.is_some_and(|p| incompatibility(p, &m).is_some());
                    let fits = BackendKind::ALL
                        .iter()
                        .any(|k| b.has(*k) && incompatibility(*k, &m).is_none());
                    prop_assert!(
                        hint_refused || (contiguous && pinnable) || !fits,
                        "refused although a usable backend fits: {e}"
                    );
                }
            }
        }
    }
}
