//! Hardware tests: vfio. QEMU's `edu` device behind the VM's IOMMU (intel-iommu on x86_64,
//! SMMUv3 on aarch64), driven through VFIO (type1 container and iommufd cdev), DMA-ing into and
//! out of unibuf buffers mapped with their permission; a DMA write into a read-only mapping must
//! leave the buffer unchanged.

use crate::harness::{self, Outcome, Test};
use anyhow::{bail, Context};
use rustix::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::interop::vfio::{self as ivfio, Edu, EduDirection, VfioDevice};
use unibuf::object::Object;

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "vfio::bind_driver_override",
            needs: "QEMU edu (1234:11e8) in an IOMMU group, vfio-pci",
            run: bind_driver_override,
        },
        Test {
            name: "vfio::edu_type1_rw_ro",
            needs: "QEMU edu (1234:11e8) in an IOMMU group, vfio-pci, /dev/vfio/vfio (type1)",
            run: edu_type1,
        },
        Test {
            name: "vfio::edu_iommufd_rw_ro",
            needs: "QEMU edu, vfio-pci with CONFIG_VFIO_DEVICE_CDEV, /dev/iommu",
            run: edu_iommufd,
        },
        Test {
            name: "vfio::constraints",
            needs: "QEMU edu (1234:11e8)",
            run: constraints,
        },
    ]
}

fn edu_bdf() -> anyhow::Result<Result<String, String>> {
    let devs = ivfio::find_pci_devices(ivfio::EDU_VENDOR, ivfio::EDU_DEVICE);
    let Some(bdf) = devs.first().cloned() else {
        return Ok(Err(
            "no edu device (1234:11e8) on the PCI bus (QEMU without -device edu)".into(),
        ));
    };
    if ivfio::iommu_group(&bdf).is_none() {
        return Ok(Err(format!("{bdf} has no IOMMU group ({NO_IOMMU})")));
    }
    match ivfio::bind_vfio_pci(&bdf) {
        Ok(()) => Ok(Ok(bdf)),
        Err(unibuf::Error::Unavailable { what, why }) => Ok(Err(format!("{what}: {why}"))),
        Err(e) => Err(e).context(format!("binding {bdf} to vfio-pci")),
    }
}

/// Reads the kernel log records written since `start` (a /dev/kmsg fd positioned at the end).
pub fn kmsg_open() -> Option<OwnedFd> {
    let fd = rustix::fs::open(
        "/dev/kmsg",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    rustix::fs::seek(&fd, rustix::fs::SeekFrom::End(0)).ok()?;
    Some(fd)
}

pub fn kmsg_lines(fd: &OwnedFd) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let s = String::from_utf8_lossy(&buf[..n]);
                let msg = s.split_once(';').map(|x| x.1).unwrap_or(&s);
                out.push(msg.trim().to_string());
            }
            Err(rustix::io::Errno::PIPE) => continue,
            Err(_) => break,
        }
    }
    out
}

const T: Duration = Duration::from_secs(10);

/// Why a device has no IOMMU group, by architecture.
#[cfg(not(target_arch = "aarch64"))]
const NO_IOMMU: &str = "no intel-iommu, or intel_iommu=off";
#[cfg(target_arch = "aarch64")]
const NO_IOMMU: &str = "no SMMU (CONFIG_ARM_SMMU_V3, qemu -machine virt,iommu=smmuv3)";

/// How the kernel reports a refused DMA: the line to wait for, and a word of any related line.
/// intel-iommu: `DMAR: [DMA Write ...] Request device [00:03.0] fault addr 0x300000 [fault
/// reason 0x05] PTE Write access is not set`; arm-smmu-v3: `event 0x10 received:` (F_PERMISSION).
#[cfg(not(target_arch = "aarch64"))]
const IOMMU_FAULT: (&str, &str) = ("fault addr", "DMAR");
#[cfg(target_arch = "aarch64")]
const IOMMU_FAULT: (&str, &str) = ("event 0x", "arm-smmu");

/// One test buffer: a unibuf object reconciled from the edu's VFIO list and a CPU list. Both
/// map memory rather than import a dma-buf, so unibuf makes it udmabuf (memfd-backed) where the
/// kernel has udmabuf and a plain memfd where it has not (Debian 6.1): either can be pinned.
struct EduBuf(Object);

impl EduBuf {
    fn new(c: &ivfio::VfioConstraints, size: u64, name: &str) -> anyhow::Result<EduBuf> {
        let mut dev = AttrList::raw(size)?;
        c.fill(&mut dev, Permission::ReadWrite)?;
        let mut cpu = AttrList::raw(size)?;
        cpu.set_accessor_kind(AccessorKind::Cpu)?
            .set_need_cpu_access(true)?
            .set_required_perm(Permission::ReadWrite)?;
        let r = Arc::new(
            unibuf::reconcile::reconcile([&dev, &cpu]).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        Ok(EduBuf(Object::allocator(&r).name(name).allocate()?))
    }

    fn what(&self) -> String {
        format!("{:?} object", self.0.backend())
    }

    fn write(&mut self, f: impl FnOnce(&mut [u8])) -> anyhow::Result<()> {
        let mut m = self.0.map_write()?;
        let mut g = m.write()?;
        let mut v = g.to_vec();
        f(&mut v);
        g.copy_from_slice(0, &v)?;
        g.end()?;
        Ok(())
    }

    fn read(&self) -> anyhow::Result<Vec<u8>> {
        let m = self.0.map_read()?;
        let g = m.read()?;
        let v = g.to_vec();
        g.end()?;
        Ok(v)
    }

    /// Maps it for the device with `perm` (a read-only object handle for `ReadOnly`).
    fn map<'d>(
        &self,
        d: &'d VfioDevice,
        iova: u64,
        perm: Permission,
    ) -> anyhow::Result<ivfio::DmaMapping<'d>> {
        Ok(if perm == Permission::ReadOnly {
            let ro = self.0.dup_with(Permission::ReadOnly)?;
            d.map_object(&ro, iova)?
        } else {
            d.map_object(&self.0, iova)?
        })
    }
}

fn run_edu(dev: VfioDevice) -> anyhow::Result<Outcome> {
    let iface = dev.interface();
    let bdf = dev.bdf().to_string();
    let edu = Edu::new(dev).context("edu init")?;
    let c = ivfio::VfioConstraints::probe(&bdf, ivfio::EDU_DMA_BITS)?;
    let page = rustix::param::page_size() as u64;
    // Half the device buffer: QEMU aborts on a transfer that touches the buffer's last byte.
    let n = ivfio::EDU_BUFFER_SIZE as usize / 2;
    let mut src = EduBuf::new(&c, page, "edu-src")?;
    src.write(|b| {
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(7).wrapping_add(3);
        }
    })?;
    let src_bytes = src.read()?;
    let mut dst = EduBuf::new(&c, page, "edu-dst")?;
    let mut ro = EduBuf::new(&c, page, "edu-ro")?;
    ro.write(|b| b.fill(0x5a))?;
    let d = edu.device();
    let m_src = src.map(d, 0x10_0000, Permission::ReadWrite)?;
    let m_dst = dst.map(d, 0x20_0000, Permission::ReadWrite)?;
    let m_ro = ro.map(d, 0x30_0000, Permission::ReadOnly)?;
    if m_ro.permission() != Permission::ReadOnly {
        bail!("read-only handle mapped {:?}", m_ro.permission());
    }

    // RAM -> device -> RAM through read-write mappings.
    edu.dma(EduDirection::RamToDevice, m_src.iova(), 0, n as u64, T)?;
    edu.dma(EduDirection::DeviceToRam, m_dst.iova(), 0, n as u64, T)?;
    let got = dst.read()?;
    if got[..n] != src_bytes[..n] {
        let first = (0..n).find(|&i| got[i] != src_bytes[i]).unwrap_or(0);
        bail!(
            "RAM->edu->RAM copy differs at byte {first}: {:#x} != {:#x}",
            got[first],
            src_bytes[first]
        );
    }

    // The device may not write the read-only mapping: DMA the source pattern (still in the
    // device buffer) into it. This is the first access to that IOVA, so the IOMMU walks the page
    // table and reports the permission fault (an IOTLB entry cached by an earlier read would make
    // QEMU's model refuse the write without a report).
    let kmsg = kmsg_open();
    edu.dma(EduDirection::DeviceToRam, m_ro.iova(), 0, n as u64, T)?;
    // The fault reaches the kernel log through the IOMMU's fault interrupt, a little after the
    // transfer: look for it for up to a second. The unchanged bytes are the proof either way.
    let mut lines = Vec::new();
    if let Some(k) = kmsg.as_ref() {
        for _ in 0..20 {
            lines.extend(kmsg_lines(k));
            if lines.iter().any(|l| l.contains(IOMMU_FAULT.0)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The line with the request and the reason (IOMMU_FAULT), else any line of that IOMMU.
    let fault = lines
        .iter()
        .find(|l| l.contains(IOMMU_FAULT.0))
        .or_else(|| lines.iter().find(|l| l.contains(IOMMU_FAULT.1)))
        .map(|l| l.split('\n').next().unwrap_or(l).to_string());
    let changed = ro.read()?[..n].iter().filter(|&&b| b != 0x5a).count();
    if changed != 0 {
        bail!("device wrote {changed} bytes into a read-only IOMMU mapping");
    }
    // ...but it may read it: the read-only buffer's bytes arrive in the read-write one.
    edu.dma(EduDirection::RamToDevice, m_ro.iova(), 0, n as u64, T)?;
    dst.write(|b| b.fill(0))?;
    edu.dma(EduDirection::DeviceToRam, m_dst.iova(), 0, n as u64, T)?;
    if dst.read()?[..n].iter().any(|&b| b != 0x5a) {
        bail!("DMA read through the read-only mapping did not see the buffer's bytes");
    }

    // A heap dma-buf's own mapping cannot be pinned (VM_PFNMAP): the kernel refuses it.
    let pfnmap = match super::v4l2::raw_heap_dmabuf(page)? {
        Some(b) => match d.map_fd(b.as_fd(), page, 0x40_0000, Permission::ReadWrite) {
            Ok(_) => {
                bail!("VFIO pinned a system-heap dma-buf mapping (expected VM_PFNMAP refusal)")
            }
            Err(e) => format!(
                "heap dma-buf map refused: {}",
                e.errno()
                    .map(|x| unibuf::Errno(x).to_string())
                    .unwrap_or_else(|| e.to_string())
            ),
        },
        None => "no system heap to try a dma-buf map".into(),
    };

    // Unmap on drop: the same IOVA can be mapped again afterwards.
    drop(m_ro);
    let again = ro
        .map(d, 0x30_0000, Permission::ReadWrite)
        .context("re-mapping the IOVA of a dropped mapping (was it unmapped?)")?;
    again.unmap()?;
    drop((m_src, m_dst));
    harness::pass(format!(
        "{iface:?}, {} buffers: RAM->edu->RAM {n} bytes verified; RO mapping readable, DMA write left it unchanged; {pfnmap}; kernel log: {}",
        src.what(),
        fault.unwrap_or_else(|| format!("no {} fault line", IOMMU_FAULT.1))
    ))
}

fn edu_type1() -> anyhow::Result<Outcome> {
    let bdf = match edu_bdf()? {
        Ok(b) => b,
        Err(why) => return harness::skip(why),
    };
    if !std::path::Path::new("/dev/vfio/vfio").exists() {
        return harness::skip("/dev/vfio/vfio missing (no VFIO container interface)");
    }
    let dev = match VfioDevice::open_type1(&bdf) {
        Ok(d) => d,
        Err(unibuf::Error::Unavailable { what, why }) => {
            return harness::skip(format!("{what}: {why}"))
        }
        Err(e) => return Err(e).context("open through type1"),
    };
    run_edu(dev)
}

fn edu_iommufd() -> anyhow::Result<Outcome> {
    let bdf = match edu_bdf()? {
        Ok(b) => b,
        Err(why) => return harness::skip(why),
    };
    if !std::path::Path::new("/dev/iommu").exists() {
        return harness::skip("/dev/iommu missing (CONFIG_IOMMUFD off)");
    }
    let dev = match VfioDevice::open_iommufd(&bdf) {
        Ok(d) => d,
        Err(unibuf::Error::Unavailable { what, why }) => {
            return harness::skip(format!("{what}: {why}"))
        }
        Err(e) => return Err(e).context("open through iommufd"),
    };
    run_edu(dev)
}

/// Unbinds edu from whatever holds it (vfio-pci, bound by the VM's init) and binds it again
/// through unibuf's `bind_vfio_pci` (driver_override + drivers_probe).
fn bind_driver_override() -> anyhow::Result<Outcome> {
    let devs = ivfio::find_pci_devices(ivfio::EDU_VENDOR, ivfio::EDU_DEVICE);
    let Some(bdf) = devs.first().cloned() else {
        return harness::skip("no edu device (1234:11e8)");
    };
    if ivfio::iommu_group(&bdf).is_none() {
        return harness::skip(format!("{bdf} has no IOMMU group"));
    }
    if !std::path::Path::new("/sys/bus/pci/drivers/vfio-pci").exists() {
        return harness::skip("no vfio-pci driver");
    }
    let dev = std::path::Path::new("/sys/bus/pci/devices").join(&bdf);
    let before = ivfio::bound_driver(&bdf);
    if before.is_some() {
        std::fs::write(dev.join("driver/unbind"), &bdf).context("unbind")?;
    }
    std::fs::write(dev.join("driver_override"), "\n").context("clearing driver_override")?;
    if let Some(d) = ivfio::bound_driver(&bdf) {
        bail!("{bdf} still bound to {d} after unbind");
    }
    ivfio::bind_vfio_pci(&bdf)?;
    let after = ivfio::bound_driver(&bdf);
    if after.as_deref() != Some("vfio-pci") {
        bail!("{bdf} bound to {after:?} after bind_vfio_pci");
    }
    // Idempotent when already bound.
    ivfio::bind_vfio_pci(&bdf)?;
    harness::pass(format!(
        "{bdf}: {before:?} -> unbound -> vfio-pci via driver_override; group /dev/vfio/{}",
        ivfio::iommu_group(&bdf).unwrap_or(0)
    ))
}

fn constraints() -> anyhow::Result<Outcome> {
    let devs = ivfio::find_pci_devices(ivfio::EDU_VENDOR, ivfio::EDU_DEVICE);
    let Some(bdf) = devs.first() else {
        return harness::skip("no edu device (1234:11e8)");
    };
    let c = ivfio::VfioConstraints::probe(bdf, ivfio::EDU_DMA_BITS)?;
    if c.iova_limit != 1 << 28 {
        bail!("IOVA limit {:#x}, expected 1<<28", c.iova_limit);
    }
    let grouped = ivfio::iommu_group(bdf).is_some();
    if c.contiguous == grouped {
        bail!(
            "contiguous={} but iommu group present={grouped}",
            c.contiguous
        );
    }
    harness::pass(format!(
        "{bdf}: contiguous={} alignment={} iova_limit={:#x}",
        c.contiguous, c.alignment, c.iova_limit
    ))
}
