//! Hotplug: devices appearing and leaving.
//!
//! With the `udev` feature the monitor is udev's (netlink group `udev`): an event arrives after
//! udevd ran its rules, so the node already has the group and mode `60-unibuf.rules` gives it.
//! Without it (static binaries, no udevd) the monitor reads the kernel's own uevents
//! (`NETLINK_KOBJECT_UEVENT`, group 1): the node exists (devtmpfs makes it before the event) but
//! its permissions are the kernel's defaults until a udevd (if any) catches up.

use super::sysfs::{device_from, parse_uevent};
use super::{Device, Source};
use crate::{Error, Result};
use rustix::event::PollFlags;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{netlink, AddressFamily, RecvFlags, SocketFlags, SocketType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What happened to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// It appeared.
    Add,
    /// It left.
    Remove,
    /// Something about it changed (a DRM hotplug on a connector, ...).
    Change,
    /// Another action (`bind`, `unbind`, `move`, `online`, ...).
    Other(String),
}

impl Action {
    fn parse(s: &str) -> Action {
        match s {
            "add" => Action::Add,
            "remove" => Action::Remove,
            "change" => Action::Change,
            o => Action::Other(o.to_string()),
        }
    }

    /// The kernel's word for it (`add`, `remove`, ...).
    pub fn name(&self) -> &str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Change => "change",
            Action::Other(s) => s,
        }
    }
}

/// One hotplug event of a device unibuf uses.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub action: Action,
    /// The device (for `remove`, what the event said of it: the node is gone).
    pub device: Device,
}

/// Where a [`Monitor`] gets its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorSource {
    /// udev's monitor: events after udevd applied its rules.
    Udev,
    /// The kernel's uevent socket: events as the kernel sends them.
    Kernel,
}

impl MonitorSource {
    /// `"udev"` or `"kernel"`.
    pub fn name(self) -> &'static str {
        match self {
            MonitorSource::Udev => "udev",
            MonitorSource::Kernel => "kernel",
        }
    }
}

enum Inner {
    #[cfg(feature = "udev")]
    Udev(::udev::MonitorSocket),
    Kernel(OwnedFd),
}

/// A hotplug monitor of heaps, udmabuf, DRM, V4L2 and VFIO devices. Its fd is pollable
/// ([`AsFd`]); [`Monitor::next_event`] waits for the next event of a device unibuf uses.
pub struct Monitor {
    inner: Inner,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("source", &self.source())
            .finish()
    }
}

impl AsFd for Monitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.inner {
            #[cfg(feature = "udev")]
            Inner::Udev(s) => s.as_fd(),
            Inner::Kernel(fd) => fd.as_fd(),
        }
    }
}

impl Monitor {
    /// udev's monitor when built with the `udev` feature and libudev works (filtered to the
    /// subsystems unibuf uses), else the kernel's uevent socket.
    pub fn new() -> Result<Monitor> {
        #[cfg(feature = "udev")]
        if let Ok(s) = udev_socket() {
            return Ok(Monitor {
                inner: Inner::Udev(s),
            });
        }
        Monitor::kernel()
    }

    /// The kernel's uevent socket (`NETLINK_KOBJECT_UEVENT`, multicast group 1), no udev.
    pub fn kernel() -> Result<Monitor> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(netlink::KOBJECT_UEVENT),
        )
        .map_err(|e| Error::sys("socket(NETLINK_KOBJECT_UEVENT)", "kernel uevents", e))?;
        rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 1))
            .map_err(|e| Error::sys("bind", "kernel uevent group 1", e))?;
        // Bursts (a module registering many nodes) must not be dropped: ask for a large buffer.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, 1 << 20);
        Ok(Monitor {
            inner: Inner::Kernel(fd),
        })
    }

    /// Where the events come from.
    pub fn source(&self) -> MonitorSource {
        match self.inner {
            #[cfg(feature = "udev")]
            Inner::Udev(_) => MonitorSource::Udev,
            Inner::Kernel(_) => MonitorSource::Kernel,
        }
    }

    /// The next event of a device unibuf uses, waiting at most `timeout` (`Ok(None)` when
    /// nothing came). Events of other devices are read and dropped.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.try_next()? {
                return Ok(Some(ev));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            crate::sys::poll::poll_one(self.as_fd(), PollFlags::IN, Some(left))
                .map_err(|e| Error::sys("poll", "hotplug monitor", e))?;
        }
    }

    /// Reads what is queued without waiting; `None` when nothing of interest is.
    fn try_next(&mut self) -> Result<Option<Event>> {
        match &self.inner {
            #[cfg(feature = "udev")]
            Inner::Udev(s) => {
                for ev in s.iter() {
                    let d = ev.device();
                    let action = d
                        .action()
                        .map(|a| Action::parse(&a.to_string_lossy()))
                        .unwrap_or(Action::Change);
                    if let Some(device) = super::udev::from_udev(&d) {
                        return Ok(Some(Event { action, device }));
                    }
                }
                Ok(None)
            }
            Inner::Kernel(fd) => {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match rustix::net::recv(fd, &mut buf[..], RecvFlags::empty()) {
                        Ok((n, _)) => n,
                        Err(rustix::io::Errno::AGAIN) => return Ok(None),
                        Err(rustix::io::Errno::INTR) => continue,
                        // Overrun: events were lost; say nothing of them and go on.
                        Err(rustix::io::Errno::NOBUFS) => continue,
                        Err(e) => return Err(Error::sys("recv", "kernel uevent socket", e)),
                    };
                    if let Some(ev) = parse_kernel_uevent(&buf[..n], Path::new("/sys")) {
                        return Ok(Some(ev));
                    }
                }
            }
        }
    }
}

#[cfg(feature = "udev")]
fn udev_socket() -> std::io::Result<::udev::MonitorSocket> {
    let mut b = ::udev::MonitorBuilder::new()?;
    for s in super::SUBSYSTEMS {
        b = b.match_subsystem(s)?;
    }
    b.listen()
}

/// Parses one kernel uevent datagram (`action@devpath\0KEY=value\0...`) into an event of a
/// device unibuf uses; `sys` is sysfs's root (for the driver link of an added device).
pub fn parse_kernel_uevent(msg: &[u8], sys: &Path) -> Option<Event> {
    let mut parts = msg.split(|&b| b == 0).filter(|p| !p.is_empty());
    let head = std::str::from_utf8(parts.next()?).ok()?;
    // udevd's own re-broadcasts start with "libudev": only the kernel's `action@path` is read.
    head.split_once('@')?;
    let text: String = parts
        .filter_map(|p| std::str::from_utf8(p).ok())
        .map(|s| format!("{s}\n"))
        .collect();
    let props: BTreeMap<String, String> = parse_uevent(&text);
    let action = Action::parse(props.get("ACTION")?);
    let subsystem = props.get("SUBSYSTEM")?.clone();
    let devpath = props.get("DEVPATH")?.clone();
    let sysname = devpath.rsplit('/').next()?.to_string();
    if devpath.split('/').any(|c| c == "..") {
        return None;
    }
    let syspath: PathBuf = sys.join(devpath.trim_start_matches('/'));
    let device = device_from(
        &subsystem,
        &sysname,
        syspath,
        props,
        Path::new("/dev"),
        Source::Sysfs,
    )?;
    Some(Event { action, device })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::DeviceKind;

    #[test]
    fn parses_kernel_uevents() {
        let msg = b"add@/devices/platform/vivid.0/video4linux/video4\0ACTION=add\0\
DEVPATH=/devices/platform/vivid.0/video4linux/video4\0SUBSYSTEM=video4linux\0MAJOR=81\0\
MINOR=4\0DEVNAME=video4\0SEQNUM=1234\0";
        let ev = parse_kernel_uevent(msg, Path::new("/nonexistent")).unwrap();
        assert_eq!(ev.action, Action::Add);
        assert_eq!(ev.device.kind, DeviceKind::Video);
        assert_eq!(ev.device.devnode, Path::new("/dev/video4"));
        assert_eq!(ev.device.devnum, Some((81, 4)));
        let msg = b"remove@/devices/virtual/drm/card0-Virtual-1\0ACTION=remove\0\
DEVPATH=/devices/virtual/drm/card0-Virtual-1\0SUBSYSTEM=drm\0";
        assert!(parse_kernel_uevent(msg, Path::new("/sys")).is_none());
        assert!(parse_kernel_uevent(b"libudev\0\xfe\xed", Path::new("/sys")).is_none());
    }
}
