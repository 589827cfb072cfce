//! Hardware tests: the environment. Each test looks for one class of device by discovery (sysfs,
//! `/dev/dma_heap`, DRM driver names), never by fixed node names, and lists what it found.
//!
//! A missing device is a FAIL on a kernel that is known to have it (`UNIBUF_HW_KERNEL` names the
//! test VM's kernel, see [`kernel`]), so a broken VM fails loudly instead of turning every other
//! test into a skip; on a kernel known to lack it, or on a board (no `UNIBUF_HW_KERNEL`), it is a
//! skip. The discovery helpers here are shared with the other test modules.

use crate::harness::{pass, skip, Outcome, Test};
use anyhow::{bail, Context};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "env::system_heap",
            needs: "/dev/dma_heap/system (CONFIG_DMABUF_HEAPS_SYSTEM; kernel >= 5.6)",
            run: system_heap,
        },
        Test {
            name: "env::cma_heap",
            needs: "a CMA dma-buf heap (CONFIG_DMABUF_HEAPS_CMA + a CMA area, e.g. cma=64M)",
            run: cma_heap,
        },
        Test {
            name: "env::udmabuf",
            needs: "/dev/udmabuf (CONFIG_UDMABUF)",
            run: udmabuf,
        },
        Test {
            name: "env::video_nodes",
            needs: "a V4L2 video node (vivid in the VM; any camera on a board)",
            run: video_nodes,
        },
        Test {
            name: "env::drm_vgem",
            needs: "a vgem DRM card (CONFIG_DRM_VGEM)",
            run: drm_vgem,
        },
        Test {
            name: "env::vkms_writeback",
            needs: "a vkms DRM card with a writeback connector (CONFIG_DRM_VKMS)",
            run: vkms_writeback,
        },
        Test {
            name: "env::unibuf_discovery",
            needs: "nothing: checks that unibuf's backend discovery agrees with what is there",
            run: unibuf_discovery,
        },
        Test {
            name: "env::vfio_edu",
            needs:
                "the QEMU edu device (1234:11e8) bound to vfio-pci in its own IOMMU group (VM only)",
            run: vfio_edu,
        },
    ]
}

/// Features the test VM's kernels are known to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// The system dma-buf heap.
    SystemHeap,
    /// A CMA dma-buf heap.
    CmaHeap,
    /// `/dev/udmabuf`.
    Udmabuf,
    /// vivid video nodes.
    Vivid,
    /// A vgem card.
    Vgem,
    /// A vkms card with a writeback connector.
    VkmsWriteback,
    /// The edu device bound to vfio-pci.
    VfioEdu,
}

/// Which kernel the tests run on: `UNIBUF_HW_KERNEL` (set by scripts/hw-test's VM init to the
/// kernel's name: `custom`, `custom-7.2`, `custom-arm64`, `debian-5.10`, `debian-6.1`,
/// `debian-6.12`, `debian-7.2`, `debian-arm64`); `None` on a board.
pub fn kernel() -> Option<String> {
    std::env::var("UNIBUF_HW_KERNEL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Whether the current kernel is known to provide `f`: `Some(true/false)` in the test VM,
/// `None` on a board (unknown).
pub fn known_to_have(f: Feature) -> Option<bool> {
    use Feature::*;
    let k = kernel()?;
    Some(match k.as_str() {
        // custom, custom-7.2, custom-arm64: every device.
        k if k.starts_with("custom") => true,
        "debian-6.12" | "debian-7.2" => !matches!(f, CmaHeap | VkmsWriteback),
        "debian-6.1" | "debian-5.10" => matches!(f, Vivid | Vgem | VfioEdu),
        "debian-arm64" => matches!(f, Udmabuf | Vivid | Vgem | VfioEdu),
        _ => return None,
    })
}

/// The outcome for a missing feature: FAIL where the kernel is known to have it, else SKIP.
pub fn missing(f: Feature, what: impl Into<String>) -> anyhow::Result<Outcome> {
    let what = what.into();
    match known_to_have(f) {
        Some(true) => Ok(Outcome::Fail(format!(
            "{what}, but kernel {} must have it: the test environment is broken",
            kernel().unwrap_or_default()
        ))),
        Some(false) => skip(format!(
            "{what} (kernel {} has none)",
            kernel().unwrap_or_default()
        )),
        None => skip(what),
    }
}

/// Names of the dma-buf heaps in `/dev/dma_heap`, sorted.
pub fn heap_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(unibuf::sys::dma_heap::DMA_HEAP_DEV_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Heap names the kernel gives CMA heaps: `linux,cma` / `reserved` (the default area, by kernel
/// version), `default-pool` and `default_cma_region` (6.17+), or a device-tree region name.
/// Everything that is not `system` or `system-uncached` is taken as a CMA heap.
pub fn cma_heap_name() -> Option<String> {
    heap_names()
        .into_iter()
        .find(|n| n != "system" && n != "system-uncached")
}

/// Opens a heap by name (read-write, close-on-exec).
pub fn open_heap(name: &str) -> anyhow::Result<OwnedFd> {
    let p = Path::new(unibuf::sys::dma_heap::DMA_HEAP_DEV_DIR).join(name);
    open_rw(&p)
}

/// Opens a device node read-write, close-on-exec.
pub fn open_rw(p: &Path) -> anyhow::Result<OwnedFd> {
    rustix::fs::open(
        p,
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .with_context(|| format!("open {}", p.display()))
}

/// The udmabuf node: the `/dev` entry whose device number matches `/sys/class/misc/udmabuf/dev`.
pub fn udmabuf_node() -> Option<PathBuf> {
    let dev = std::fs::read_to_string("/sys/class/misc/udmabuf/dev").ok()?;
    dev_node_for("udmabuf", dev.trim())
}

/// Finds `/dev/NAME` (or any `/dev` entry) with the `major:minor` number `dev`.
fn dev_node_for(name: &str, dev: &str) -> Option<PathBuf> {
    let (ma, mi) = dev.split_once(':')?;
    let want = rustix::fs::makedev(ma.parse().ok()?, mi.parse().ok()?);
    let matches = |p: &Path| {
        rustix::fs::stat(p)
            .map(|s| {
                rustix::fs::FileType::from_raw_mode(s.st_mode)
                    == rustix::fs::FileType::CharacterDevice
                    && s.st_rdev == want
            })
            .unwrap_or(false)
    };
    let direct = Path::new("/dev").join(name);
    if matches(&direct) {
        return Some(direct);
    }
    std::fs::read_dir("/dev")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| matches(p))
}

/// A DRM primary node (`cardN`) with its driver's name.
pub struct DrmCard {
    /// The node.
    pub path: PathBuf,
    /// Driver name from DRM_IOCTL_VERSION (`vgem`, `vkms`, ...).
    pub driver: String,
    /// The open node.
    pub fd: OwnedFd,
}

impl AsFd for DrmCard {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
impl drm::Device for DrmCard {}
impl drm::control::Device for DrmCard {}

/// Every DRM primary node that unibuf's device discovery finds (udev or sysfs, in its one
/// order), opened, with its driver name; nodes that cannot be opened are left out.
pub fn drm_cards() -> Vec<DrmCard> {
    let mut cards = Vec::new();
    for d in unibuf::devices::enumerate_kind(unibuf::devices::DeviceKind::DrmCard) {
        let Ok(fd) = open_rw(&d.devnode) else {
            continue;
        };
        let mut card = DrmCard {
            path: d.devnode,
            driver: String::new(),
            fd,
        };
        if let Ok(d) = drm::Device::get_driver(&card) {
            card.driver = d.name().to_string_lossy().into_owned();
        }
        cards.push(card);
    }
    cards
}

/// The first DRM card driven by `driver`.
pub fn drm_card(driver: &str) -> Option<DrmCard> {
    drm_cards().into_iter().find(|c| c.driver == driver)
}

/// A PCI device found in sysfs.
pub struct PciDev {
    /// Its sysfs directory.
    pub sysfs: PathBuf,
    /// Bus address (`0000:00:03.0`).
    pub addr: String,
}

/// PCI devices with the given vendor and device ids.
pub fn pci_devices(vendor: u16, device: u16) -> Vec<PciDev> {
    let read_id = |p: &Path, f: &str| -> Option<u16> {
        let s = std::fs::read_to_string(p.join(f)).ok()?;
        u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
    };
    let mut v: Vec<PciDev> = std::fs::read_dir("/sys/bus/pci/devices")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    read_id(&e.path(), "vendor") == Some(vendor)
                        && read_id(&e.path(), "device") == Some(device)
                })
                .map(|e| PciDev {
                    sysfs: e.path(),
                    addr: e.file_name().to_string_lossy().into_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.addr.cmp(&b.addr));
    v
}

/// Name of the last path component a sysfs link points to (`driver`, `iommu_group`).
pub fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn system_heap() -> anyhow::Result<Outcome> {
    let heaps = heap_names();
    if !heaps.iter().any(|h| h == "system") {
        return missing(
            Feature::SystemHeap,
            format!("no system heap in /dev/dma_heap (heaps: {heaps:?})"),
        );
    }
    open_heap("system")?;
    pass(format!("heaps: {}", heaps.join(" ")))
}

fn cma_heap() -> anyhow::Result<Outcome> {
    let Some(name) = cma_heap_name() else {
        return missing(
            Feature::CmaHeap,
            format!("no CMA heap in /dev/dma_heap (heaps: {:?})", heap_names()),
        );
    };
    open_heap(&name)?;
    let cma = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("CmaTotal:"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    pass(format!(
        "CMA heap {name:?}; {}",
        cma.split_whitespace().collect::<Vec<_>>().join(" ")
    ))
}

fn udmabuf() -> anyhow::Result<Outcome> {
    let Some(node) = udmabuf_node() else {
        return missing(
            Feature::Udmabuf,
            "no udmabuf misc device in /sys/class/misc",
        );
    };
    open_rw(&node)?;
    pass(node.display().to_string())
}

fn video_nodes() -> anyhow::Result<Outcome> {
    let mut found = Vec::new();
    if let Ok(d) = std::fs::read_dir("/sys/class/video4linux") {
        for e in d.filter_map(|e| e.ok()) {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with("video") {
                continue;
            }
            let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
            found.push(format!("{n}={}", name.trim()));
        }
    }
    found.sort();
    if found.is_empty() {
        return missing(Feature::Vivid, "no video nodes in /sys/class/video4linux");
    }
    if known_to_have(Feature::Vivid) == Some(true) && !found.iter().any(|f| f.contains("vivid")) {
        bail!("video nodes {found:?} include no vivid node");
    }
    // vivid capture nodes by API (capabilities, not node numbers): the VM makes one single-planar
    // and one multi-planar instance, and both must be there.
    let mut apis = Vec::new();
    for p in unibuf::interop::v4l2::VideoNode::find(Some("vivid")) {
        if let Ok(n) = unibuf::interop::v4l2::VideoNode::open(&p) {
            let api = if n.is_mplane() { "mplane" } else { "single" };
            apis.push(format!("{}:{api}", p.display()));
        }
    }
    if known_to_have(Feature::Vivid) == Some(true) {
        for api in ["single", "mplane"] {
            if !apis.iter().any(|a| a.ends_with(api)) {
                return missing(
                    Feature::Vivid,
                    format!("no {api} vivid capture node (vivid capture nodes: {apis:?})"),
                );
            }
        }
    }
    pass(format!(
        "{}; vivid capture {}",
        found.join(", "),
        apis.join(" ")
    ))
}

fn drm_vgem() -> anyhow::Result<Outcome> {
    let cards = drm_cards();
    let list: Vec<String> = cards
        .iter()
        .map(|c| format!("{}={}", c.path.display(), c.driver))
        .collect();
    if !cards.iter().any(|c| c.driver == "vgem") {
        return missing(Feature::Vgem, format!("no vgem card (cards: {list:?})"));
    }
    pass(list.join(", "))
}

fn vkms_writeback() -> anyhow::Result<Outcome> {
    use drm::control::{connector::Interface, Device as _};
    use drm::ClientCapability;
    let Some(card) = drm_card("vkms") else {
        return missing(Feature::VkmsWriteback, "no vkms card");
    };
    drm::Device::set_client_capability(&card, ClientCapability::Atomic, true)
        .with_context(|| format!("{}: DRM_CLIENT_CAP_ATOMIC", card.path.display()))?;
    drm::Device::set_client_capability(&card, ClientCapability::WritebackConnectors, true)
        .with_context(|| {
            format!(
                "{}: DRM_CLIENT_CAP_WRITEBACK_CONNECTORS",
                card.path.display()
            )
        })?;
    let res = card
        .resource_handles()
        .with_context(|| format!("{}: DRM_IOCTL_MODE_GETRESOURCES", card.path.display()))?;
    let mut kinds = Vec::new();
    for &h in res.connectors() {
        let info = card
            .get_connector(h, false)
            .with_context(|| format!("{}: DRM_IOCTL_MODE_GETCONNECTOR", card.path.display()))?;
        kinds.push(info.interface());
    }
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    if !kinds.contains(&Interface::Writeback) {
        bail!(
            "{} (vkms) has no writeback connector (connectors: {names:?})",
            card.path.display()
        );
    }
    pass(format!("{}: connectors {names:?}", card.path.display()))
}

fn vfio_edu() -> anyhow::Result<Outcome> {
    let devs = pci_devices(0x1234, 0x11e8);
    let Some(edu) = devs.first() else {
        return missing(
            Feature::VfioEdu,
            "no QEMU edu device (1234:11e8) on the PCI bus",
        );
    };
    let driver = link_name(&edu.sysfs.join("driver"));
    if driver.as_deref() != Some("vfio-pci") {
        return missing(
            Feature::VfioEdu,
            format!("edu {} is bound to {driver:?}, not vfio-pci", edu.addr),
        );
    }
    let Some(group) = link_name(&edu.sysfs.join("iommu_group")) else {
        bail!("edu {} bound to vfio-pci but has no iommu_group", edu.addr);
    };
    let members: Vec<String> =
        std::fs::read_dir(format!("/sys/kernel/iommu_groups/{group}/devices"))
            .with_context(|| format!("read /sys/kernel/iommu_groups/{group}/devices"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
    if members != [edu.addr.clone()] {
        bail!("IOMMU group {group} holds {members:?}, not the edu device alone");
    }
    let node = Path::new("/dev/vfio").join(&group);
    rustix::fs::stat(&node).with_context(|| format!("stat {}", node.display()))?;
    let mut note = format!(
        "edu {} in IOMMU group {group}, {}",
        edu.addr,
        node.display()
    );
    if let Ok(d) = std::fs::read_dir(edu.sysfs.join("vfio-dev")) {
        let cdevs: Vec<String> = d
            .filter_map(|e| e.ok())
            .map(|e| format!("/dev/vfio/devices/{}", e.file_name().to_string_lossy()))
            .collect();
        if !cdevs.is_empty() {
            note.push_str(&format!(", cdev {}", cdevs.join(" ")));
        }
    }
    pass(note)
}

/// unibuf's own discovery (`Backends::discover`) must see exactly the backends the raw discovery
/// above finds: no backend missed (a wrong path or name rule) and none invented.
fn unibuf_discovery() -> anyhow::Result<Outcome> {
    use unibuf::attr::BackendKind;
    use unibuf::backend::Backends;
    let b = Backends::discover();
    let vgem = drm_card("vgem").is_some();
    let any_card = !drm_cards().is_empty();
    let want = [
        (
            BackendKind::SystemHeap,
            heap_names().iter().any(|h| h == "system"),
        ),
        (BackendKind::CmaHeap, cma_heap_name().is_some()),
        (BackendKind::Udmabuf, udmabuf_node().is_some()),
        (BackendKind::Memfd, true),
    ];
    let mut wrong = Vec::new();
    for (kind, there) in want {
        if b.has(kind) != there {
            wrong.push(format!(
                "{kind:?}: unibuf says {}, raw discovery says {} ({})",
                if b.has(kind) { "usable" } else { "not usable" },
                if there { "present" } else { "absent" },
                b.why_not(kind)
            ));
        }
    }
    // Dumb buffers: vgem must be found and preferred when it exists; no card, no dumb buffers.
    let dumb = b.drm_dumb().and_then(|d| d.driver.clone());
    if vgem && dumb.as_deref() != Some("vgem") {
        wrong.push(format!("DrmDumb: vgem present but unibuf picks {dumb:?}"));
    }
    if !any_card && dumb.is_some() {
        wrong.push(format!("DrmDumb: no DRM card but unibuf picks {dumb:?}"));
    }
    if !wrong.is_empty() {
        bail!("{}", wrong.join("; "));
    }
    let usable: Vec<String> = BackendKind::ALL
        .iter()
        .filter(|k| b.has(**k))
        .map(|k| format!("{k:?}"))
        .collect();
    pass(format!("usable backends: {}", usable.join(" ")))
}
