//! The sysfs scan: `/sys/class/<subsystem>/<name>` with its `uevent` file, no libudev.

use super::{sort, Device, DeviceKind, Source, SUBSYSTEMS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `KEY=value` lines of a `uevent` file.
pub(crate) fn parse_uevent(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The last component of a symlink's target (`device/driver` -> `vfio-pci`).
pub(crate) fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Builds a device from its sysfs directory and `uevent` properties; `dev` is devfs's root.
pub(crate) fn device_from(
    subsystem: &str,
    sysname: &str,
    syspath: PathBuf,
    properties: BTreeMap<String, String>,
    dev: &Path,
    source: Source,
) -> Option<Device> {
    let kind = DeviceKind::classify(subsystem, sysname)?;
    // The node's name under /dev is DEVNAME (`dri/card0`, `vfio/devices/vfio0`, `dma_heap/system`);
    // DEVNAME is relative, never `..`: anything else is not trusted.
    let devname = properties
        .get("DEVNAME")
        .map(|s| s.trim_start_matches("/dev/").to_string())
        .filter(|s| !s.is_empty() && !s.split('/').any(|c| c == ".." || c.is_empty()))
        .unwrap_or_else(|| default_devname(kind, sysname));
    let devnum = match (properties.get("MAJOR"), properties.get("MINOR")) {
        (Some(a), Some(b)) => a.parse().ok().zip(b.parse().ok()),
        _ => None,
    };
    let driver = properties
        .get("ID_DRIVER")
        .cloned()
        .or_else(|| link_name(&syspath.join("device/driver")));
    Some(Device {
        kind,
        sysname: sysname.to_string(),
        subsystem: subsystem.to_string(),
        devnode: dev.join(devname),
        syspath,
        devnum,
        driver,
        properties,
        source,
    })
}

/// Where a node lives when `uevent` has no `DEVNAME`.
fn default_devname(kind: DeviceKind, sysname: &str) -> String {
    match kind {
        DeviceKind::DmaHeap => format!("dma_heap/{sysname}"),
        DeviceKind::DrmCard | DeviceKind::DrmRender => format!("dri/{sysname}"),
        DeviceKind::VfioGroup => format!("vfio/{sysname}"),
        DeviceKind::VfioDevice => format!("vfio/devices/{sysname}"),
        DeviceKind::VfioContainer => "vfio/vfio".into(),
        _ => sysname.to_string(),
    }
}

/// Scans `sys/class/{dma_heap,misc,drm,video4linux,vfio,vfio-dev}` (`sys` is sysfs's root, `dev`
/// devfs's: `/sys` and `/dev`, or a fake tree in tests). Sorted with [`super::sort`].
pub fn enumerate_sysfs(sys: &Path, dev: &Path) -> Vec<Device> {
    let mut out = Vec::new();
    for subsystem in SUBSYSTEMS {
        let Ok(rd) = std::fs::read_dir(sys.join("class").join(subsystem)) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(sysname) = e.file_name().into_string() else {
                continue;
            };
            if DeviceKind::classify(subsystem, &sysname).is_none() {
                continue;
            }
            let link = e.path();
            let props = std::fs::read_to_string(link.join("uevent"))
                .map(|t| parse_uevent(&t))
                .unwrap_or_default();
            let syspath = std::fs::canonicalize(&link).unwrap_or(link);
            if let Some(d) = device_from(subsystem, &sysname, syspath, props, dev, Source::Sysfs) {
                out.push(d);
            }
        }
    }
    sort(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_tree() {
        let root = std::env::temp_dir().join(format!("unibuf-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mk = |p: &str, uevent: &str| {
            let d = root.join("sys/class").join(p);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("uevent"), uevent).unwrap();
        };
        mk("drm/card10", "MAJOR=226\nMINOR=10\nDEVNAME=dri/card10\n");
        mk("drm/card2", "MAJOR=226\nMINOR=2\nDEVNAME=dri/card2\n");
        mk("drm/card2-Virtual-1", "");
        mk(
            "drm/renderD128",
            "MAJOR=226\nMINOR=128\nDEVNAME=dri/renderD128\n",
        );
        mk(
            "dma_heap/system",
            "MAJOR=250\nMINOR=0\nDEVNAME=dma_heap/system\n",
        );
        mk("misc/udmabuf", "MAJOR=10\nMINOR=125\nDEVNAME=udmabuf\n");
        mk("misc/fuse", "MAJOR=10\nMINOR=229\nDEVNAME=fuse\n");
        mk("vfio/7", "MAJOR=511\nMINOR=0\nDEVNAME=vfio/7\n");
        mk("video4linux/video1", "DEVNAME=../../etc/passwd\n");
        let v = enumerate_sysfs(&root.join("sys"), Path::new("/dev"));
        let names: Vec<_> = v
            .iter()
            .map(|d| (d.kind, d.sysname.as_str(), d.devnode.display().to_string()))
            .collect();
        assert_eq!(
            names,
            [
                (DeviceKind::DmaHeap, "system", "/dev/dma_heap/system".into()),
                (DeviceKind::Udmabuf, "udmabuf", "/dev/udmabuf".into()),
                (DeviceKind::DrmCard, "card2", "/dev/dri/card2".into()),
                (DeviceKind::DrmCard, "card10", "/dev/dri/card10".into()),
                (
                    DeviceKind::DrmRender,
                    "renderD128",
                    "/dev/dri/renderD128".into()
                ),
                (DeviceKind::Video, "video1", "/dev/video1".into()),
                (DeviceKind::VfioGroup, "7", "/dev/vfio/7".into()),
            ]
        );
        assert_eq!(v[2].devnum, Some((226, 2)));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
