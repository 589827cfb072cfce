//! The udev source (cargo feature `udev`): libudev's enumerator and device properties.

use super::sysfs::device_from;
use super::{sort, Device, Source, SUBSYSTEMS};
use std::collections::BTreeMap;
use std::path::Path;

/// Whether libudev answers (a context can be made).
pub(super) fn available() -> bool {
    ::udev::Udev::new().is_ok()
}

/// A unibuf device from a udev device (`None` for devices unibuf does not use, or without a
/// node).
pub(super) fn from_udev(d: &::udev::Device) -> Option<Device> {
    let subsystem = d.subsystem()?.to_string_lossy().into_owned();
    let sysname = d.sysname().to_string_lossy().into_owned();
    let mut props: BTreeMap<String, String> = d
        .properties()
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                p.value().to_string_lossy().into_owned(),
            )
        })
        .collect();
    // The driver is the parent's (a node itself has none): `device/driver` in sysfs terms.
    if let Some(drv) = d
        .parent()
        .and_then(|p| p.driver().map(|s| s.to_string_lossy().into_owned()))
    {
        props.entry("ID_DRIVER".into()).or_insert(drv);
    }
    let mut dev = device_from(
        &subsystem,
        &sysname,
        d.syspath().to_path_buf(),
        props,
        Path::new("/dev"),
        Source::Udev,
    )?;
    if let Some(node) = d.devnode() {
        dev.devnode = node.to_path_buf();
    }
    Some(dev)
}

/// Every device of [`SUBSYSTEMS`], or `None` when libudev fails (then sysfs is used).
pub(super) fn enumerate() -> Option<Vec<Device>> {
    let mut e = ::udev::Enumerator::new().ok()?;
    for s in SUBSYSTEMS {
        e.match_subsystem(s).ok()?;
    }
    let mut out: Vec<Device> = e
        .scan_devices()
        .ok()?
        .filter_map(|d| from_udev(&d))
        .collect();
    sort(&mut out);
    Some(out)
}
