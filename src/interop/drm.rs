//! DRM/KMS: a constraint provider from a plane, PRIME import of unibuf buffers as framebuffers,
//! atomic scanout, and writeback readback (through the `drm` crate).
//!
//! - [`Card::open`] / [`Card::find`] open a KMS card (atomic and writeback client caps on).
//! - [`Card::plane_constraints`] is the constraint provider: the formats and modifiers of a plane
//!   (`IN_FORMATS`, falling back to the plane's format list with the linear modifier) and the
//!   driver's pitch alignment ([`Card::pitch_alignment`]).
//! - [`Card::import_framebuffer`] imports a dma-buf (`PRIME_FD_TO_HANDLE`) and makes a
//!   framebuffer of it with unibuf's pitches, offsets and modifier (`ADDFB2`).
//! - [`Output`] finds a CRTC, its primary plane, a connected connector and a writeback connector,
//!   and [`Output::commit`] scans a framebuffer out with an atomic commit, optionally capturing the
//!   composed frame into a writeback framebuffer; [`WritebackFence::wait`] waits for it.

use crate::attr::{AccessorKind, AttrList, BufferType, Permission};
use crate::error::{Error, Result};
use drm::control::{
    atomic::AtomicModeReq, connector, crtc, framebuffer, plane, property, AtomicCommitFlags,
    Device as ControlDevice, FbCmd2Flags, Mode,
};
use drm::{ClientCapability, Device as DrmDevice};
use rustix::event::PollFlags;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode as FileMode, OFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use drm::control::PlaneType;
pub use drm_fourcc::DrmFourcc;

/// `DRM_FORMAT_MOD_LINEAR`.
pub const MOD_LINEAR: u64 = 0;
/// `DRM_FORMAT_MOD_INVALID`.
pub const MOD_INVALID: u64 = 0x00ff_ffff_ffff_ffff;

fn io_err(op: &'static str, target: impl Into<String>, e: std::io::Error) -> Error {
    Error::sys(
        op,
        target,
        rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
    )
}

/// An open DRM card.
#[derive(Debug)]
pub struct Card {
    fd: OwnedFd,
    path: String,
    driver: String,
}

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl DrmDevice for Card {}
impl ControlDevice for Card {}

/// A plane's formats and modifiers: `(fourcc, modifiers)` pairs.
pub type FormatModifiers = Vec<(u32, Vec<u64>)>;

/// Parses an `IN_FORMATS` blob (`struct drm_format_modifier_blob`, version 1) into
/// `(fourcc, modifiers)` pairs in the blob's format order. Every offset and count is checked
/// against the blob's length.
pub fn parse_in_formats(blob: &[u8]) -> Result<FormatModifiers> {
    let bad = |why: &str| Error::InvalidArgument(format!("IN_FORMATS blob: {why}"));
    let u32_at = |off: usize| -> Result<u32> {
        let b = blob
            .get(off..off + 4)
            .ok_or_else(|| bad(&format!("truncated at {off}")))?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |off: usize| -> Result<u64> {
        let b = blob
            .get(off..off + 8)
            .ok_or_else(|| bad(&format!("truncated at {off}")))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_ne_bytes(a))
    };
    let version = u32_at(0)?;
    if version != 1 {
        return Err(bad(&format!("version {version}, only 1 is known")));
    }
    let count_formats = u32_at(8)? as usize;
    let formats_offset = u32_at(12)? as usize;
    let count_modifiers = u32_at(16)? as usize;
    let modifiers_offset = u32_at(20)? as usize;
    if count_formats > 4096 || count_modifiers > 4096 {
        return Err(bad("implausible counts"));
    }
    let formats: Vec<u32> = (0..count_formats)
        .map(|i| u32_at(formats_offset + 4 * i))
        .collect::<Result<_>>()?;
    let mut out: FormatModifiers = formats.iter().map(|&f| (f, Vec::new())).collect();
    for m in 0..count_modifiers {
        // struct drm_format_modifier { __u64 formats; __u32 offset; __u32 pad; __u64 modifier; }
        let base = modifiers_offset + 24 * m;
        let mask = u64_at(base)?;
        let offset = u32_at(base + 8)? as usize;
        let modifier = u64_at(base + 16)?;
        for bit in 0..64 {
            if mask & (1 << bit) != 0 {
                let idx = offset + bit;
                let entry = out
                    .get_mut(idx)
                    .ok_or_else(|| bad(&format!("modifier {modifier:#x} names format {idx}")))?;
                entry.1.push(modifier);
            }
        }
    }
    Ok(out)
}

/// What a DRM plane needs of a buffer: the constraint provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrmConstraints {
    /// Always [`AccessorKind::Display`].
    pub accessor: AccessorKind,
    /// The card.
    pub device: String,
    /// The plane's object id.
    pub plane: u32,
    /// Formats and the modifiers each accepts.
    pub formats: FormatModifiers,
    /// Pitch alignment in bytes the driver wants.
    pub pitch_alignment: u32,
}

impl DrmConstraints {
    /// The modifiers the plane accepts for `fourcc` (empty when it does not take the format).
    pub fn modifiers(&self, fourcc: u32) -> &[u64] {
        self.formats
            .iter()
            .find(|(f, _)| *f == fourcc)
            .map(|(_, m)| m.as_slice())
            .unwrap_or(&[])
    }

    /// Whether the plane takes `fourcc` with the linear modifier.
    pub fn supports_linear(&self, fourcc: u32) -> bool {
        self.modifiers(fourcc).contains(&MOD_LINEAR)
    }

    /// The plane's modifier set for `fourcc`, as `image.modifiers` takes it: the `IN_FORMATS`
    /// modifiers in the blob's order (the driver's declaration order; the kernel does not say
    /// it is a preference, so unibuf takes it as one), repeats dropped, at most
    /// [`crate::attr::MAX_MODIFIERS`] (the first ones). Empty when the plane lacks the format.
    pub fn modifier_set(&self, fourcc: u32) -> Vec<u64> {
        let mut set: Vec<u64> = Vec::new();
        for &m in self.modifiers(fourcc) {
            if !set.contains(&m) && set.len() < crate::attr::MAX_MODIFIERS {
                set.push(m);
            }
        }
        set
    }

    /// The display's attribute list for a `fourcc` image of `width`×`height`: the plane's
    /// modifier set for the format ([`DrmConstraints::modifier_set`], usage `scanout`), its
    /// pitch alignment, accessor kind `Display` (scanout only reads: read-only). Fails when
    /// the plane does not take the format.
    pub fn attr_list(&self, fourcc: u32, width: u32, height: u32) -> Result<AttrList> {
        self.list(fourcc, width, height, Permission::ReadOnly, "plane")
    }

    /// The attribute list of a writeback target for a `fourcc` image of `width`×`height`: like
    /// [`DrmConstraints::attr_list`], but the display writes the buffer (read-write) and the
    /// modifier is `LINEAR` (writeback connectors state formats only, no modifiers). The
    /// writeback connector's formats are not those of the plane; the caller checks them.
    pub fn writeback_attr_list(&self, fourcc: u32, width: u32, height: u32) -> Result<AttrList> {
        let mut l = AttrList::with_types(&[BufferType::Image])?;
        l.set_image_drm_fourcc(fourcc)?
            .set_image_size(width, height)?
            .set_image_modifier(MOD_LINEAR)?
            .set_pitch_align(self.pitch_alignment as u64)?
            .set_accessor_kind(AccessorKind::Display)?
            .set_accessor_name(&format!("drm:{}:writeback", self.device))?
            .set_required_perm(Permission::ReadWrite)?;
        Ok(l)
    }

    fn list(
        &self,
        fourcc: u32,
        width: u32,
        height: u32,
        perm: Permission,
        what: &str,
    ) -> Result<AttrList> {
        let set = self.modifier_set(fourcc);
        if set.is_empty() {
            return Err(Error::Device {
                device: format!("{} plane {}", self.device, self.plane),
                what: format!(
                    "does not scan out fourcc {fourcc:#x} (it takes {} formats)",
                    self.formats.len()
                ),
            });
        }
        let mut l = AttrList::with_types(&[BufferType::Image])?;
        l.set_image_drm_fourcc(fourcc)?
            .set_image_size(width, height)?
            .set_image_modifiers(set)?
            .set_image_modifier_usage(crate::attr::ModifierUsage::Scanout)?
            .set_pitch_align(self.pitch_alignment as u64)?
            .set_accessor_kind(AccessorKind::Display)?
            .set_accessor_name(&format!("drm:{}:{what}{}", self.device, self.plane))?
            .set_required_perm(perm)?;
        Ok(l)
    }
}

/// A framebuffer made from an imported dma-buf; removed (and its GEM handle closed) on drop.
#[derive(Debug)]
pub struct ImportedFb<'c> {
    card: &'c Card,
    fb: framebuffer::Handle,
    gem: drm::buffer::Handle,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl ImportedFb<'_> {
    /// The framebuffer handle.
    pub fn handle(&self) -> framebuffer::Handle {
        self.fb
    }
}

impl Drop for ImportedFb<'_> {
    fn drop(&mut self) {
        let _ = self.card.destroy_framebuffer(self.fb);
        let _ = self.card.close_buffer(self.gem);
    }
}

struct Planar {
    size: (u32, u32),
    format: drm_fourcc::DrmFourcc,
    modifier: Option<drm_fourcc::DrmModifier>,
    pitches: [u32; 4],
    handles: [Option<drm::buffer::Handle>; 4],
    offsets: [u32; 4],
}

impl drm::buffer::PlanarBuffer for Planar {
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn format(&self) -> drm_fourcc::DrmFourcc {
        self.format
    }
    fn modifier(&self) -> Option<drm_fourcc::DrmModifier> {
        self.modifier
    }
    fn pitches(&self) -> [u32; 4] {
        self.pitches
    }
    fn handles(&self) -> [Option<drm::buffer::Handle>; 4] {
        self.handles
    }
    fn offsets(&self) -> [u32; 4] {
        self.offsets
    }
}

impl From<&crate::layout::DrmFramebuffer> for FbLayout {
    fn from(f: &crate::layout::DrmFramebuffer) -> FbLayout {
        let n = f.plane_count.min(4);
        FbLayout {
            width: f.width,
            height: f.height,
            fourcc: f.fourcc,
            modifier: Some(f.modifier),
            pitches: f.pitches[..n].to_vec(),
            offsets: f.offsets[..n].to_vec(),
        }
    }
}

/// A framebuffer layout: what `ADDFB2` needs besides the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FbLayout {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// DRM fourcc.
    pub fourcc: u32,
    /// Modifier (`None`: the driver's implicit layout, no `DRM_MODE_FB_MODIFIERS`).
    pub modifier: Option<u64>,
    /// Per-plane pitches (1 to 4 planes).
    pub pitches: Vec<u32>,
    /// Per-plane byte offsets into the buffer.
    pub offsets: Vec<u32>,
}

impl Card {
    /// Opens a card and enables the atomic and writeback-connector client caps (the latter where
    /// the driver has them).
    pub fn open(path: impl AsRef<Path>) -> Result<Card> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let fd = rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, FileMode::empty())
            .map_err(|e| Error::sys("open", name.clone(), e))?;
        let mut card = Card {
            fd,
            path: name,
            driver: String::new(),
        };
        let drv = card
            .get_driver()
            .map_err(|e| io_err("DRM_IOCTL_VERSION", card.path.clone(), e))?;
        card.driver = drv.name().to_string_lossy().into_owned();
        Ok(card)
    }

    /// The first card node whose driver is `driver` (`"vkms"`), in the order of
    /// [`crate::devices::sort`] (`card2` before `card10`).
    pub fn find(driver: &str) -> Option<PathBuf> {
        crate::devices::enumerate_kind(crate::devices::DeviceKind::DrmCard)
            .into_iter()
            .map(|d| d.devnode)
            .find(|p| Card::open(p).is_ok_and(|c| c.driver == driver))
    }

    /// The card's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The driver name.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Enables atomic modesetting (and universal planes) and, where available, writeback
    /// connectors.
    pub fn enable_atomic(&self) -> Result<bool> {
        self.set_client_capability(ClientCapability::UniversalPlanes, true)
            .map_err(|e| io_err("DRM_CLIENT_CAP_UNIVERSAL_PLANES", self.path.clone(), e))?;
        self.set_client_capability(ClientCapability::Atomic, true)
            .map_err(|e| io_err("DRM_CLIENT_CAP_ATOMIC", self.path.clone(), e))?;
        Ok(self
            .set_client_capability(ClientCapability::WritebackConnectors, true)
            .is_ok())
    }

    fn props<H: drm::control::ResourceHandle>(
        &self,
        h: H,
    ) -> Result<HashMap<String, (property::Handle, u64)>> {
        let set = self
            .get_properties(h)
            .map_err(|e| io_err("DRM_IOCTL_MODE_OBJ_GETPROPERTIES", self.path.clone(), e))?;
        let mut out = HashMap::new();
        let (ids, vals) = set.as_props_and_values();
        for (id, val) in ids.iter().zip(vals.iter()) {
            let info = self
                .get_property(*id)
                .map_err(|e| io_err("DRM_IOCTL_MODE_GETPROPERTY", self.path.clone(), e))?;
            out.insert(info.name().to_string_lossy().into_owned(), (*id, *val));
        }
        Ok(out)
    }

    /// The planes of the card with their type.
    pub fn planes(&self) -> Result<Vec<(plane::Handle, PlaneType)>> {
        let hs = self
            .plane_handles()
            .map_err(|e| io_err("DRM_IOCTL_MODE_GETPLANERESOURCES", self.path.clone(), e))?;
        let mut out = Vec::new();
        for h in hs {
            let p = self.props(h)?;
            let t = match p.get("type").map(|x| x.1) {
                Some(v) if v == PlaneType::Primary as u64 => PlaneType::Primary,
                Some(v) if v == PlaneType::Cursor as u64 => PlaneType::Cursor,
                _ => PlaneType::Overlay,
            };
            out.push((h, t));
        }
        Ok(out)
    }

    /// The driver's pitch alignment for `bpp` bits per pixel, learned from the pitch the driver
    /// gives a one-pixel-wide dumb buffer (DRM has no uapi that states it): the largest power of
    /// two dividing that pitch, at least 1.
    pub fn pitch_alignment(&self, bpp: u32) -> Result<u32> {
        let dumb = self
            .create_dumb_buffer((1, 1), drm_fourcc::DrmFourcc::Xrgb8888, bpp)
            .map_err(|e| io_err("DRM_IOCTL_MODE_CREATE_DUMB", self.path.clone(), e))?;
        use drm::buffer::Buffer;
        let pitch = dumb.pitch();
        let _ = self.destroy_dumb_buffer(dumb);
        Ok(if pitch == 0 {
            1
        } else {
            1 << pitch.trailing_zeros()
        })
    }

    /// The constraint provider: `plane`'s formats and modifiers and the pitch alignment for 32 bpp.
    pub fn plane_constraints(&self, plane: plane::Handle) -> Result<DrmConstraints> {
        let props = self.props(plane)?;
        let formats = match props.get("IN_FORMATS") {
            Some((_, blob_id)) if *blob_id != 0 => {
                let blob = self
                    .get_property_blob(*blob_id)
                    .map_err(|e| io_err("DRM_IOCTL_MODE_GETPROPBLOB", self.path.clone(), e))?;
                parse_in_formats(&blob)?
            }
            _ => {
                let info = self
                    .get_plane(plane)
                    .map_err(|e| io_err("DRM_IOCTL_MODE_GETPLANE", self.path.clone(), e))?;
                info.formats()
                    .iter()
                    .map(|&f| (f, vec![MOD_LINEAR]))
                    .collect()
            }
        };
        Ok(DrmConstraints {
            accessor: AccessorKind::Display,
            device: self.path.clone(),
            plane: u32::from(plane),
            formats,
            pitch_alignment: self.pitch_alignment(32)?,
        })
    }

    /// Imports a dma-buf (`PRIME_FD_TO_HANDLE`) and makes a framebuffer of it with `layout`
    /// (`ADDFB2`, with `DRM_MODE_FB_MODIFIERS` when a modifier is given). All planes live in the
    /// one buffer at their offsets. The fd may be read-only: PRIME import does not look at its
    /// access mode.
    pub fn import_framebuffer(
        &self,
        fd: BorrowedFd<'_>,
        layout: &FbLayout,
    ) -> Result<ImportedFb<'_>> {
        let n = layout.pitches.len();
        if n == 0 || n > 4 || layout.offsets.len() != n || layout.width == 0 || layout.height == 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: framebuffer layout {layout:?}: 1 to 4 planes with a pitch and an offset each, non-zero size",
                self.path
            )));
        }
        let format = drm_fourcc::DrmFourcc::try_from(layout.fourcc).map_err(|_| {
            Error::InvalidArgument(format!("unknown DRM fourcc {:#x}", layout.fourcc))
        })?;
        let gem = self
            .prime_fd_to_buffer(fd)
            .map_err(|e| io_err("DRM_IOCTL_PRIME_FD_TO_HANDLE", self.path.clone(), e))?;
        let mut pb = Planar {
            size: (layout.width, layout.height),
            format,
            modifier: layout.modifier.map(drm_fourcc::DrmModifier::from),
            pitches: [0; 4],
            handles: [None; 4],
            offsets: [0; 4],
        };
        for i in 0..n {
            pb.pitches[i] = layout.pitches[i];
            pb.offsets[i] = layout.offsets[i];
            pb.handles[i] = Some(gem);
        }
        let flags = if layout.modifier.is_some() {
            FbCmd2Flags::MODIFIERS
        } else {
            FbCmd2Flags::empty()
        };
        match self.add_planar_framebuffer(&pb, flags) {
            Ok(fb) => Ok(ImportedFb {
                card: self,
                fb,
                gem,
                width: layout.width,
                height: layout.height,
            }),
            Err(e) => {
                let _ = self.close_buffer(gem);
                Err(io_err(
                    "DRM_IOCTL_MODE_ADDFB2",
                    format!("{} ({layout:?})", self.path),
                    e,
                ))
            }
        }
    }
}

/// A display path: CRTC, primary plane, connector, mode, and a writeback connector if the card
/// has one.
#[derive(Debug)]
pub struct Output {
    /// The CRTC.
    pub crtc: crtc::Handle,
    /// Its primary plane.
    pub plane: plane::Handle,
    /// A connected connector.
    pub connector: connector::Handle,
    /// A writeback connector that can be attached to the CRTC.
    pub writeback: Option<connector::Handle>,
    /// The mode set by the first commit.
    pub mode: Mode,
    mode_blob: Option<u64>,
    modeset_done: bool,
    writeback_only: bool,
}

/// The out-fence of a writeback job: a sync_file that signals when the frame is in the buffer.
#[derive(Debug)]
pub struct WritebackFence(OwnedFd);

impl WritebackFence {
    /// Waits for the writeback to complete.
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        let got = crate::sys::poll::poll_one(self.0.as_fd(), PollFlags::IN, Some(timeout))
            .map_err(|e| Error::sys("poll", "writeback out-fence", e))?;
        if got.is_empty() {
            return Err(Error::Device {
                device: "writeback".into(),
                what: format!("out-fence did not signal within {timeout:?}"),
            });
        }
        Ok(())
    }
}

fn prop_of(
    map: &HashMap<String, (property::Handle, u64)>,
    name: &str,
    what: &str,
) -> Result<property::Handle> {
    map.get(name)
        .map(|p| p.0)
        .ok_or_else(|| Error::Unavailable {
            what: format!("property {name} on {what}"),
            why: "the driver does not expose it (atomic cap off?)".into(),
        })
}

impl Output {
    /// Finds a connected connector with a mode of `width`×`height`, a CRTC its encoder can drive,
    /// that CRTC's primary plane, and a writeback connector (requires [`Card::enable_atomic`]).
    pub fn find(card: &Card, width: u32, height: u32) -> Result<Output> {
        let res = card
            .resource_handles()
            .map_err(|e| io_err("DRM_IOCTL_MODE_GETRESOURCES", card.path.clone(), e))?;
        let mut conn_mode = None;
        let mut writeback = None;
        for &c in res.connectors() {
            let info = card
                .get_connector(c, true)
                .map_err(|e| io_err("DRM_IOCTL_MODE_GETCONNECTOR", card.path.clone(), e))?;
            if info.interface() == connector::Interface::Writeback {
                writeback.get_or_insert(c);
                continue;
            }
            if info.state() != connector::State::Connected || conn_mode.is_some() {
                continue;
            }
            if let Some(m) = info
                .modes()
                .iter()
                .find(|m| m.size() == (width as u16, height as u16))
            {
                conn_mode = Some((c, *m, info.encoders().to_vec()));
            }
        }
        let (connector, mode, encoders) = conn_mode.ok_or_else(|| Error::Unavailable {
            what: format!(
                "a connected connector with a {width}x{height} mode on {}",
                card.path
            ),
            why: "none found".into(),
        })?;
        let mut crtc = None;
        for e in encoders {
            let enc = card
                .get_encoder(e)
                .map_err(|e| io_err("DRM_IOCTL_MODE_GETENCODER", card.path.clone(), e))?;
            if let Some(c) = res.filter_crtcs(enc.possible_crtcs()).first() {
                crtc = Some(*c);
                break;
            }
        }
        let crtc = crtc.ok_or_else(|| Error::Unavailable {
            what: format!("a CRTC for the connector on {}", card.path),
            why: "no encoder offers one".into(),
        })?;
        let crtc_index = res.crtcs().iter().position(|c| *c == crtc).unwrap_or(0);
        let mut primary = None;
        for (p, t) in card.planes()? {
            if t != PlaneType::Primary {
                continue;
            }
            let info = card
                .get_plane(p)
                .map_err(|e| io_err("DRM_IOCTL_MODE_GETPLANE", card.path.clone(), e))?;
            if res.filter_crtcs(info.possible_crtcs()).contains(&crtc) || crtc_index == 0 {
                primary = Some(p);
                break;
            }
        }
        let plane = primary.ok_or_else(|| Error::Unavailable {
            what: format!("a primary plane for the CRTC on {}", card.path),
            why: "none found".into(),
        })?;
        Ok(Output {
            crtc,
            plane,
            connector,
            writeback,
            mode,
            mode_blob: None,
            modeset_done: false,
            writeback_only: false,
        })
    }

    /// Scans `fb` out on the primary plane (full screen, no scaling) with a blocking atomic commit
    /// (the first one also sets the mode). With `writeback`, the composed frame is also written
    /// into that framebuffer; the returned fence signals when it is there.
    ///
    /// Some drivers cannot drive the connector and the writeback connector from one CRTC at once
    /// (vkms in 6.12 leaves its encoders' `possible_clones` at themselves, so the clone check
    /// refuses the pair). The first commit with a writeback job tests the pair with
    /// `DRM_MODE_ATOMIC_TEST_ONLY`; when it is refused, the CRTC drives the writeback connector
    /// alone ([`Output::writeback_only`]) — the plane is still scanned out and composed.
    pub fn commit(
        &mut self,
        card: &Card,
        fb: &ImportedFb<'_>,
        writeback: Option<&ImportedFb<'_>>,
    ) -> Result<Option<WritebackFence>> {
        let (w, h) = self.mode.size();
        let (w, h) = (w as u32, h as u32);
        if fb.width != w || fb.height != h {
            return Err(Error::InvalidArgument(format!(
                "framebuffer {}x{} does not cover the {w}x{h} mode",
                fb.width, fb.height
            )));
        }
        if let Some(wb_fb) = writeback {
            if self.writeback.is_none() {
                return Err(Error::Unavailable {
                    what: format!("a writeback connector on {}", card.path),
                    why: "the card has none (or the writeback client cap is off)".into(),
                });
            }
            if wb_fb.width != w || wb_fb.height != h {
                return Err(Error::InvalidArgument(format!(
                    "writeback framebuffer {}x{} differs from the {w}x{h} mode",
                    wb_fb.width, wb_fb.height
                )));
            }
        }
        if !self.modeset_done {
            let blob = card
                .create_property_blob(&self.mode)
                .map_err(|e| io_err("DRM_IOCTL_MODE_CREATEPROPBLOB", card.path.clone(), e))?;
            if let property::Value::Blob(id) = blob {
                self.mode_blob = Some(id);
            }
            if writeback.is_some() {
                let probe = self.request(card, fb, None, true, true, None)?;
                let test = AtomicCommitFlags::TEST_ONLY | AtomicCommitFlags::ALLOW_MODESET;
                if card.atomic_commit(test, probe).is_err() {
                    self.writeback_only = true;
                }
            }
        }
        let mut fence = crate::sys::drm::OutFenceSlot::new();
        let fence_ptr = writeback.map(|_| fence.property_value());
        let req = self.request(
            card,
            fb,
            writeback,
            !self.writeback_only,
            writeback.is_some(),
            fence_ptr,
        )?;
        let flags = if self.modeset_done {
            AtomicCommitFlags::empty()
        } else {
            AtomicCommitFlags::ALLOW_MODESET
        };
        card.atomic_commit(flags, req)
            .map_err(|e| io_err("DRM_IOCTL_MODE_ATOMIC", card.path.clone(), e))?;
        self.modeset_done = true;
        if writeback.is_some() {
            let fd = fence.take().ok_or_else(|| Error::Device {
                device: card.path.clone(),
                what: "atomic commit with a writeback job returned no out-fence".into(),
            })?;
            return Ok(Some(WritebackFence(fd)));
        }
        Ok(None)
    }

    /// Whether the CRTC drives the writeback connector alone (see [`Output::commit`]).
    pub fn writeback_only(&self) -> bool {
        self.writeback_only
    }

    /// Builds one atomic request: the mode (until the first commit), the plane, the connector
    /// (`with_connector`), the writeback connector's routing (`with_wb_route`) and its job.
    fn request(
        &self,
        card: &Card,
        fb: &ImportedFb<'_>,
        writeback: Option<&ImportedFb<'_>>,
        with_connector: bool,
        with_wb_route: bool,
        fence_ptr: Option<u64>,
    ) -> Result<AtomicModeReq> {
        let (w, h) = self.mode.size();
        let (w, h) = (w as u64, h as u64);
        let mut req = AtomicModeReq::new();
        let pp = card.props(self.plane)?;
        let cp = card.props(self.crtc)?;
        let crtc_id = u64::from(u32::from(self.crtc));
        if !self.modeset_done {
            let blob = self.mode_blob.ok_or_else(|| Error::Device {
                device: card.path.clone(),
                what: "no mode blob".into(),
            })?;
            req.add_raw_property(self.crtc.into(), prop_of(&cp, "MODE_ID", "CRTC")?, blob);
            req.add_raw_property(self.crtc.into(), prop_of(&cp, "ACTIVE", "CRTC")?, 1);
            // Without the connector, detach it explicitly: the kernel's fbdev client may have
            // put it on this CRTC at boot.
            let conp = card.props(self.connector)?;
            req.add_raw_property(
                self.connector.into(),
                prop_of(&conp, "CRTC_ID", "connector")?,
                if with_connector { crtc_id } else { 0 },
            );
        }
        let plane_set = [
            ("FB_ID", u64::from(u32::from(fb.fb))),
            ("CRTC_ID", crtc_id),
            ("SRC_X", 0),
            ("SRC_Y", 0),
            ("SRC_W", w << 16),
            ("SRC_H", h << 16),
            ("CRTC_X", 0),
            ("CRTC_Y", 0),
            ("CRTC_W", w),
            ("CRTC_H", h),
        ];
        for (name, val) in plane_set {
            req.add_raw_property(self.plane.into(), prop_of(&pp, name, "plane")?, val);
        }
        if let Some(wb) = self.writeback.filter(|_| with_wb_route) {
            let wp = card.props(wb)?;
            req.add_raw_property(
                wb.into(),
                prop_of(&wp, "CRTC_ID", "writeback connector")?,
                crtc_id,
            );
            if let Some(wb_fb) = writeback {
                req.add_raw_property(
                    wb.into(),
                    prop_of(&wp, "WRITEBACK_FB_ID", "writeback connector")?,
                    u64::from(u32::from(wb_fb.fb)),
                );
                if let Some(ptr) = fence_ptr {
                    // The kernel writes the out-fence fd through this user pointer during the
                    // ioctl.
                    req.add_raw_property(
                        wb.into(),
                        prop_of(&wp, "WRITEBACK_OUT_FENCE_PTR", "writeback connector")?,
                        ptr,
                    );
                }
            }
        }
        Ok(req)
    }

    /// Turns the CRTC off and detaches the plane and connectors (so framebuffers can go).
    pub fn disable(&mut self, card: &Card) -> Result<()> {
        if !self.modeset_done {
            return Ok(());
        }
        let mut req = AtomicModeReq::new();
        let pp = card.props(self.plane)?;
        let cp = card.props(self.crtc)?;
        let conp = card.props(self.connector)?;
        req.add_raw_property(self.plane.into(), prop_of(&pp, "FB_ID", "plane")?, 0);
        req.add_raw_property(self.plane.into(), prop_of(&pp, "CRTC_ID", "plane")?, 0);
        req.add_raw_property(
            self.connector.into(),
            prop_of(&conp, "CRTC_ID", "connector")?,
            0,
        );
        if let Some(wb) = self.writeback {
            let wp = card.props(wb)?;
            req.add_raw_property(
                wb.into(),
                prop_of(&wp, "CRTC_ID", "writeback connector")?,
                0,
            );
        }
        req.add_raw_property(self.crtc.into(), prop_of(&cp, "ACTIVE", "CRTC")?, 0);
        req.add_raw_property(self.crtc.into(), prop_of(&cp, "MODE_ID", "CRTC")?, 0);
        card.atomic_commit(AtomicCommitFlags::ALLOW_MODESET, req)
            .map_err(|e| io_err("DRM_IOCTL_MODE_ATOMIC(disable)", card.path.clone(), e))?;
        if let Some(b) = self.mode_blob.take() {
            let _ = card.destroy_property_blob(b);
        }
        self.modeset_done = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(formats: &[u32], mods: &[(u64, u32, u64)]) -> Vec<u8> {
        let mut b = Vec::new();
        let foff = 24u32;
        let moff = foff + 4 * formats.len() as u32;
        for v in [1u32, 0, formats.len() as u32, foff, mods.len() as u32, moff] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        for f in formats {
            b.extend_from_slice(&f.to_ne_bytes());
        }
        for (mask, off, m) in mods {
            b.extend_from_slice(&mask.to_ne_bytes());
            b.extend_from_slice(&off.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&m.to_ne_bytes());
        }
        b
    }

    #[test]
    fn in_formats_parsed() {
        let b = blob(
            &[0x34325258, 0x34324152],
            &[(0b11, 0, 0), (0b10, 0, 0x0100000000000001)],
        );
        let f = parse_in_formats(&b).unwrap();
        assert_eq!(
            f,
            vec![
                (0x34325258, vec![0]),
                (0x34324152, vec![0, 0x0100000000000001])
            ]
        );
    }

    #[test]
    fn in_formats_bounds_checked() {
        let b = blob(&[1], &[(0b10, 0, 0)]);
        assert!(parse_in_formats(&b).is_err());
        let mut b = blob(&[1, 2], &[]);
        b.truncate(26);
        assert!(parse_in_formats(&b).is_err());
        assert!(parse_in_formats(&[]).is_err());
    }
}
