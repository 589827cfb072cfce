//! Device discovery for the backends and the providers: DMA-BUF heaps, udmabuf, V4L2 video
//! nodes, DRM cards and render nodes, VFIO groups, device cdevs, the container and iommufd.
//!
//! One enumeration serves every caller ([`crate::backend::discover`], the V4L2/DRM/VFIO providers,
//! the CLI), with one sort order ([`sort`]: by kind, then by name with numbers compared as
//! numbers, so `card2` comes before `card10` everywhere).
//!
//! Two sources give the same [`Device`]s:
//!
//! - **udev** (cargo feature `udev`, default off in the library): libudev's enumerator, with
//!   what udev knows beyond sysfs: `ID_PATH`, `ID_V4L_CAPABILITIES`, `ID_SEAT`, tags. It needs
//!   libudev.so at run time, so it is a feature: the static test binaries of `scripts/hw-test`
//!   are built without it.
//! - **sysfs** (always there, the fallback when libudev is absent or fails): `/sys/class/<subsystem>`
//!   with each device's `uevent` file (`MAJOR`, `MINOR`, `DEVNAME`) and its `device/driver` link.
//!
//! [`Monitor`] reports devices appearing and leaving (udev's monitor, or the kernel's uevent
//! netlink socket without the feature).

mod monitor;
mod sysfs;
#[cfg(feature = "udev")]
mod udev;

pub use monitor::{Action, Event, Monitor, MonitorSource};
pub use sysfs::enumerate_sysfs;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What a device node is, for unibuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceKind {
    /// A DMA-BUF heap (`/dev/dma_heap/<name>`, subsystem `dma_heap`).
    DmaHeap,
    /// `/dev/udmabuf` (misc).
    Udmabuf,
    /// A DRM primary node (`/dev/dri/cardN`).
    DrmCard,
    /// A DRM render node (`/dev/dri/renderDN`).
    DrmRender,
    /// A V4L2 video node (`/dev/videoN`).
    Video,
    /// The VFIO container (`/dev/vfio/vfio`, misc).
    VfioContainer,
    /// A VFIO group (`/dev/vfio/N`, subsystem `vfio`).
    VfioGroup,
    /// A VFIO device cdev (`/dev/vfio/devices/vfioN`, subsystem `vfio-dev`).
    VfioDevice,
    /// iommufd (`/dev/iommu`, misc).
    Iommufd,
}

impl DeviceKind {
    /// Every kind, in [`sort`] order.
    pub const ALL: [DeviceKind; 9] = [
        DeviceKind::DmaHeap,
        DeviceKind::Udmabuf,
        DeviceKind::DrmCard,
        DeviceKind::DrmRender,
        DeviceKind::Video,
        DeviceKind::VfioContainer,
        DeviceKind::VfioGroup,
        DeviceKind::VfioDevice,
        DeviceKind::Iommufd,
    ];

    /// A short stable name (`dma-heap`, `drm-card`, ...), used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::DmaHeap => "dma-heap",
            DeviceKind::Udmabuf => "udmabuf",
            DeviceKind::DrmCard => "drm-card",
            DeviceKind::DrmRender => "drm-render",
            DeviceKind::Video => "video",
            DeviceKind::VfioContainer => "vfio-container",
            DeviceKind::VfioGroup => "vfio-group",
            DeviceKind::VfioDevice => "vfio-device",
            DeviceKind::Iommufd => "iommufd",
        }
    }

    /// The kind of a device of `subsystem` named `sysname`, `None` for devices unibuf does not
    /// use (DRM connectors, other misc devices, ...).
    pub fn classify(subsystem: &str, sysname: &str) -> Option<DeviceKind> {
        let numbered = |prefix: &str| {
            sysname
                .strip_prefix(prefix)
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        };
        Some(match subsystem {
            "dma_heap" => DeviceKind::DmaHeap,
            "misc" => match sysname {
                "udmabuf" => DeviceKind::Udmabuf,
                "vfio" => DeviceKind::VfioContainer,
                "iommu" => DeviceKind::Iommufd,
                _ => return None,
            },
            "drm" if numbered("card") => DeviceKind::DrmCard,
            "drm" if numbered("renderD") => DeviceKind::DrmRender,
            "video4linux" if numbered("video") => DeviceKind::Video,
            "vfio" => DeviceKind::VfioGroup,
            "vfio-dev" if numbered("vfio") => DeviceKind::VfioDevice,
            _ => return None,
        })
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a [`Device`] was learned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// libudev (feature `udev`).
    Udev,
    /// `/sys/class` and `uevent` files.
    Sysfs,
}

impl Source {
    /// `"udev"` or `"sysfs"`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Udev => "udev",
            Source::Sysfs => "sysfs",
        }
    }
}

/// The subsystems unibuf enumerates (every [`DeviceKind`] is in one of them).
pub const SUBSYSTEMS: [&str; 6] = ["dma_heap", "misc", "drm", "video4linux", "vfio", "vfio-dev"];

/// One device node, with what udev (or sysfs) knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// What it is.
    pub kind: DeviceKind,
    /// The kernel's name (`system`, `udmabuf`, `card0`, `renderD128`, `video0`, `12`, `vfio0`).
    pub sysname: String,
    /// The subsystem (`dma_heap`, `misc`, `drm`, `video4linux`, `vfio`, `vfio-dev`).
    pub subsystem: String,
    /// The device node (`/dev/dri/card0`).
    pub devnode: PathBuf,
    /// Its sysfs directory.
    pub syspath: PathBuf,
    /// `(major, minor)`, when known.
    pub devnum: Option<(u32, u32)>,
    /// The driver of the parent device (`vkms`, `vivid`, `vfio-pci`), when it has one.
    pub driver: Option<String>,
    /// The udev properties (`ID_PATH`, `ID_V4L_CAPABILITIES`, `ID_SEAT`, ...); from sysfs only
    /// the `uevent` file's (`MAJOR`, `MINOR`, `DEVNAME`, ...).
    pub properties: BTreeMap<String, String>,
    /// Where this was learned from.
    pub source: Source,
}

impl Device {
    /// A property's value.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    /// udev's `ID_PATH` (`pci-0000:00:02.0`, `platform-vkms`), udev only.
    pub fn id_path(&self) -> Option<&str> {
        self.property("ID_PATH")
    }

    /// The seat (`ID_SEAT`; udev's default for devices tagged `seat` is `seat0`).
    pub fn seat(&self) -> Option<&str> {
        self.property("ID_SEAT").or_else(|| {
            self.property("TAGS")
                .or_else(|| self.property("CURRENT_TAGS"))
                .filter(|t| t.split(':').any(|t| t == "seat"))
                .map(|_| "seat0")
        })
    }

    /// V4L2 capabilities as udev's v4l_id reports them (`:capture:`), udev only.
    pub fn v4l_capabilities(&self) -> Option<&str> {
        self.property("ID_V4L_CAPABILITIES")
    }

    /// The device as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind.name(),
            "sysname": self.sysname,
            "subsystem": self.subsystem,
            "devnode": self.devnode.display().to_string(),
            "syspath": self.syspath.display().to_string(),
            "devnum": self.devnum.map(|(a, b)| format!("{a}:{b}")),
            "driver": self.driver,
            "id_path": self.id_path(),
            "seat": self.seat(),
            "source": self.source.name(),
            "properties": self.properties,
        })
    }
}

/// The sort key of a name: text and numbers alternating, numbers compared as numbers
/// (`card2` < `card10`, `renderD128` < `renderD129`).
pub fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut num: Option<u64> = None;
    for c in name.chars() {
        match (c.to_digit(10), num) {
            (Some(d), n) => num = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d.into())),
            (None, Some(n)) => {
                out.push((std::mem::take(&mut text), n));
                num = None;
                text.push(c);
            }
            (None, None) => text.push(c),
        }
    }
    out.push((text, num.unwrap_or(0)));
    out
}

/// The one order of devices: by kind, then by name with numbers as numbers.
pub fn sort(devices: &mut [Device]) {
    devices.sort_by(|a, b| {
        (a.kind, natural_key(&a.sysname), &a.devnode).cmp(&(
            b.kind,
            natural_key(&b.sysname),
            &b.devnode,
        ))
    });
}

/// Sorts paths by their file names in the natural order (for callers with bare paths).
pub fn sort_paths(paths: &mut [PathBuf]) {
    paths.sort_by_key(|p| {
        (
            natural_key(&p.file_name().unwrap_or_default().to_string_lossy()),
            p.clone(),
        )
    });
}

/// Which source [`enumerate`] uses in this process: udev when built with the feature and libudev
/// answers, else sysfs.
pub fn source() -> Source {
    #[cfg(feature = "udev")]
    if udev::available() {
        return Source::Udev;
    }
    Source::Sysfs
}

/// Every device unibuf can use, sorted ([`sort`]): through udev when the feature is on and
/// libudev works, else through `/sys` and `/dev`.
pub fn enumerate() -> Vec<Device> {
    #[cfg(feature = "udev")]
    if let Some(v) = udev::enumerate() {
        return v;
    }
    enumerate_sysfs(Path::new("/sys"), Path::new("/dev"))
}

/// The devices of one kind, sorted.
pub fn enumerate_kind(kind: DeviceKind) -> Vec<Device> {
    enumerate().into_iter().filter(|d| d.kind == kind).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(
            DeviceKind::classify("drm", "card0"),
            Some(DeviceKind::DrmCard)
        );
        assert_eq!(DeviceKind::classify("drm", "card0-Writeback-1"), None);
        assert_eq!(
            DeviceKind::classify("drm", "renderD128"),
            Some(DeviceKind::DrmRender)
        );
        assert_eq!(
            DeviceKind::classify("misc", "udmabuf"),
            Some(DeviceKind::Udmabuf)
        );
        assert_eq!(DeviceKind::classify("misc", "fuse"), None);
        assert_eq!(
            DeviceKind::classify("vfio", "12"),
            Some(DeviceKind::VfioGroup)
        );
        assert_eq!(
            DeviceKind::classify("vfio-dev", "vfio0"),
            Some(DeviceKind::VfioDevice)
        );
        assert_eq!(DeviceKind::classify("video4linux", "v4l-subdev0"), None);
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["card10", "card2", "card1", "video11", "video3"];
        v.sort_by_key(|n| natural_key(n));
        assert_eq!(v, ["card1", "card2", "card10", "video3", "video11"]);
        assert!(natural_key("linux,cma") < natural_key("reserved"));
        assert!(natural_key("system") < natural_key("system-uncached"));
    }
}
