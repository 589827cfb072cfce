//! Hardware tests: drm. vkms as the display: the plane constraint provider, PRIME import with
//! ADDFB2, atomic scanout and readback through the writeback connector; and the camera-to-display
//! pipeline (vivid → vkms → writeback) checked against vivid's colorbar, with one frame saved as a
//! PNG.

use super::v4l2::{check_colorbar, vivid_colorbar, vivid_node};
use crate::harness::{self, Outcome, Test};
use anyhow::{bail, Context};
use std::sync::Arc;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, BufferType, Permission};
use unibuf::interop::drm::{Card, FbLayout, Output};
use unibuf::interop::v4l2::{CapturePlane, DmabufCapture};
use unibuf::object::Object;
use unibuf::reconcile::Reconciled;
use unibuf::sys::v4l2::V4L2_PIX_FMT_XBGR32;

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "drm::vkms_plane_constraints",
            needs: "vkms (/dev/dri/card*)",
            run: vkms_plane_constraints,
        },
        Test {
            name: "drm::vkms_scanout_writeback",
            needs: "vkms with its writeback connector, a dma-buf backend",
            run: vkms_scanout_writeback,
        },
        Test {
            name: "drm::pipeline_vivid_vkms_writeback",
            needs: "vivid, vkms with writeback, a dma-buf backend",
            run: pipeline,
        },
    ]
}

const XRGB8888: u32 = unibuf::interop::drm::DrmFourcc::Xrgb8888 as u32;

fn vkms() -> anyhow::Result<Result<Card, String>> {
    let Some(path) = Card::find("vkms") else {
        return Ok(Err(
            "no vkms card in /dev/dri (kernel without CONFIG_DRM_VKMS, e.g. Debian's)".into(),
        ));
    };
    let card = Card::open(&path)?;
    Ok(Ok(card))
}

fn vkms_plane_constraints() -> anyhow::Result<Outcome> {
    let card = match vkms()? {
        Ok(c) => c,
        Err(why) => return harness::skip(why),
    };
    card.enable_atomic()?;
    let planes = card.planes()?;
    let (primary, _) = planes
        .iter()
        .find(|(_, t)| *t == unibuf::interop::drm::PlaneType::Primary)
        .context("vkms has no primary plane")?;
    let c = card.plane_constraints(*primary)?;
    if !c.supports_linear(XRGB8888) {
        bail!(
            "vkms primary plane lacks XRGB8888 with the linear modifier: {:?}",
            c.formats
        );
    }
    if !c.pitch_alignment.is_power_of_two() {
        bail!(
            "pitch alignment {} is not a power of two",
            c.pitch_alignment
        );
    }
    harness::pass(format!(
        "{} plane {}: {} formats (XRGB8888 modifiers {:x?}), pitch alignment {}",
        card.path(),
        c.plane,
        c.formats.len(),
        c.modifiers(XRGB8888),
        c.pitch_alignment
    ))
}

fn reconcile<'a>(lists: impl IntoIterator<Item = &'a AttrList>) -> anyhow::Result<Arc<Reconciled>> {
    Ok(Arc::new(
        unibuf::reconcile::reconcile(lists).map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

fn compare_rgb(
    a: &[u8],
    b: &[u8],
    w: u32,
    h: u32,
    pitch_a: usize,
    pitch_b: usize,
) -> anyhow::Result<()> {
    for y in 0..h as usize {
        for x in 0..w as usize {
            let (oa, ob) = (y * pitch_a + x * 4, y * pitch_b + x * 4);
            if a[oa..oa + 3] != b[ob..ob + 3] {
                bail!(
                    "pixel ({x},{y}) differs: scanned out {:02x?}, written back {:02x?}",
                    &a[oa..oa + 3],
                    &b[ob..ob + 3]
                );
            }
        }
    }
    Ok(())
}

fn draw_colorbar(bytes: &mut [u8], w: u32, h: u32, pitch: usize) {
    for y in 0..h as usize {
        for x in 0..w as usize {
            let (_, rgb) = super::v4l2::COLORBAR[x * 8 / w as usize];
            let o = y * pitch + x * 4;
            bytes[o..o + 4].copy_from_slice(&[rgb[2], rgb[1], rgb[0], 0xff]);
        }
    }
}

fn vkms_scanout_writeback() -> anyhow::Result<Outcome> {
    let card = match vkms()? {
        Ok(c) => c,
        Err(why) => return harness::skip(why),
    };
    if !card.enable_atomic()? {
        return harness::skip("vkms without writeback connector support");
    }
    let (w, h) = (640u32, 480u32);
    let mut out = Output::find(&card, w, h)?;
    if out.writeback.is_none() {
        return harness::skip("vkms has no writeback connector (enable_writeback=0?)");
    }
    let disp = card.plane_constraints(out.plane)?;
    // Source: the display reads it, the CPU draws into it. Target: the writeback writes it, the
    // CPU reads it.
    let mut cpu_w = AttrList::with_types(&[BufferType::Image])?;
    cpu_w
        .set_accessor_kind(AccessorKind::Cpu)?
        .set_need_cpu_access(true)?
        .set_required_perm(Permission::ReadWrite)?;
    let mut cpu_r = AttrList::with_types(&[BufferType::Image])?;
    cpu_r
        .set_accessor_kind(AccessorKind::Cpu)?
        .set_need_cpu_access(true)?
        .set_required_perm(Permission::ReadOnly)?;
    let rs = reconcile([&disp.attr_list(XRGB8888, w, h)?, &cpu_w])?;
    let rd = reconcile([&disp.writeback_attr_list(XRGB8888, w, h)?, &cpu_r])?;
    let (mut src, dst) = match (
        Object::allocate_named(&rs, "vkms-src"),
        Object::allocate_named(&rd, "vkms-wb"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(unibuf::Error::Unavailable { what, why }), _)
        | (_, Err(unibuf::Error::Unavailable { what, why })) => {
            return harness::skip(format!("no dma-buf backend: {what}: {why}"))
        }
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    let fbl: FbLayout = (&rs
        .image()
        .context("no image")?
        .drm_framebuffer()
        .context("no ADDFB2 layout")?)
        .into();
    let pitch = fbl.pitches[0];
    {
        let mut m = src.map_write()?;
        let mut g = m.write()?;
        draw_colorbar(&mut g, w, h, pitch as usize);
        g.end()?;
    }
    let fb = card.import_framebuffer(src.fd(), &fbl)?;
    let wbl: FbLayout = (&rd
        .image()
        .context("no image")?
        .drm_framebuffer()
        .context("no ADDFB2 layout")?)
        .into();
    let wb = card.import_framebuffer(dst.fd(), &wbl)?;
    let fence = commit_debug(&mut out, &card, &fb, &wb)?;
    fence.wait(Duration::from_secs(10))?;
    let sm = src.map_read()?;
    let sg = sm.read()?;
    let dm = dst.map_read()?;
    let dg = dm.read()?;
    let r = compare_rgb(&sg, &dg, w, h, pitch as usize, wbl.pitches[0] as usize);
    let seen = check_colorbar(&dg, w, h, wbl.pitches[0] as usize);
    drop((sg, dg));
    let wb_only = out.writeback_only();
    out.disable(&card)?;
    r?;
    let seen = seen?;
    harness::pass(format!(
        "{} {w}x{h} XRGB8888 pitch {pitch}: scanout of a {} object written back pixel-exact into a {} object ({seen}){}",
        card.path(),
        src.backend().map(|b| b.to_string()).unwrap_or_default(),
        dst.backend().map(|b| b.to_string()).unwrap_or_default(),
        if wb_only { "; CRTC drove the writeback connector alone (driver refuses it cloned with Virtual-1)" } else { "" },
    ))
}

/// Where the pipeline writes its PNG: `$UNIBUF_ARTIFACTS` (the VM harness's shared folder) or
/// the temp dir.
fn artifact_dir() -> std::path::PathBuf {
    std::env::var_os("UNIBUF_ARTIFACTS")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir)
}

fn pipeline() -> anyhow::Result<Outcome> {
    let card = match vkms()? {
        Ok(c) => c,
        Err(why) => return harness::skip(why),
    };
    let Some(node) = vivid_node() else {
        return harness::skip("no vivid capture node");
    };
    if !card.enable_atomic()? {
        return harness::skip("vkms without writeback connector support");
    }
    vivid_colorbar(&node)?;
    // Constraint providers: the camera's format and the display's plane.
    let cam = node.try_format(V4L2_PIX_FMT_XBGR32, 640, 480)?;
    let (w, h) = (cam.width, cam.height);
    let mut out = Output::find(&card, w, h)?;
    if out.writeback.is_none() {
        return harness::skip("vkms has no writeback connector");
    }
    let disp = card.plane_constraints(out.plane)?;
    // Reconcile the camera's and the display's lists into one layout; allocate four buffers.
    let r = reconcile([&cam.attr_list()?, &disp.attr_list(XRGB8888, w, h)?])?;
    let bufs = match Object::allocate_n(&r, 4) {
        Ok(o) => o,
        Err(unibuf::Error::Unavailable { what, why }) => {
            return harness::skip(format!("no dma-buf backend: {what}: {why}"))
        }
        Err(e) => return Err(e.into()),
    };
    let img = r.image().context("reconciled list has no image layout")?;
    let fbl: FbLayout = (&img
        .drm_framebuffer()
        .context("layout not expressible for ADDFB2")?)
        .into();
    let v4l = img
        .v4l2_format()
        .context("layout not expressible as a V4L2 format")?;
    node.set_format(cam.fourcc, w, h, &[v4l.bytesperline])?;
    // The writeback target: written by the display, read by the CPU.
    let mut cpu_r = AttrList::with_types(&[BufferType::Image])?;
    cpu_r
        .set_accessor_kind(AccessorKind::Cpu)?
        .set_need_cpu_access(true)?
        .set_required_perm(Permission::ReadOnly)?;
    let rw = reconcile([&disp.writeback_attr_list(XRGB8888, w, h)?, &cpu_r])?;
    let wbobj = Object::allocate_named(&rw, "vkms-writeback")?;
    let wbl: FbLayout = (&rw
        .image()
        .context("no image")?
        .drm_framebuffer()
        .context("no ADDFB2 layout")?)
        .into();
    // The display side holds the capture buffers read-only.
    let ro: Vec<Object> = bufs
        .iter()
        .map(|b| b.dup_with(Permission::ReadOnly))
        .collect::<Result<_, _>>()?;
    let fbs = ro
        .iter()
        .map(|b| card.import_framebuffer(b.fd(), &fbl))
        .collect::<Result<Vec<_>, _>>()?;
    let wb = card.import_framebuffer(wbobj.fd(), &wbl)?;
    let planes = bufs
        .iter()
        .map(|b| {
            vec![CapturePlane {
                fd: b.fd(),
                length: b.size() as u32,
            }]
        })
        .collect();
    let mut cap = DmabufCapture::new(&node, planes)?;
    for i in 0..cap.len() {
        cap.queue(i)?;
    }
    cap.start()?;
    let wm = wbobj.map_read()?;
    let frames = 5;
    let mut seen = String::new();
    let mut png = None;
    let wpitch = wbl.pitches[0] as usize;
    for n in 0..frames {
        let f = cap.dequeue(Duration::from_secs(10))?;
        let fence = commit_debug(&mut out, &card, &fbs[f.index], &wb)?;
        fence.wait(Duration::from_secs(10))?;
        let g = wm.read()?;
        let r = check_colorbar(&g, w, h, wpitch);
        if n == frames - 1 {
            let p = artifact_dir().join("unibuf-pipeline-frame.png");
            unibuf::interop::png::write_xrgb8888(&p, w, h, wpitch, &g)?;
            png = Some(p);
        }
        g.end()?;
        seen =
            r.with_context(|| format!("written-back frame {} (capture seq {})", n, f.sequence))?;
        cap.queue(f.index)?;
    }
    cap.stop()?;
    let wb_only = out.writeback_only();
    out.disable(&card)?;
    let png = png.context("no PNG")?;
    // The VM's file system goes away with it: also print the file, base64, so the host can
    // recover it from the results log.
    let bytes = std::fs::read(&png)?;
    println!("PIPELINE-PNG {} ({} bytes)", png.display(), bytes.len());
    println!("PIPELINE-PNG-BASE64 {}", base64(&bytes));
    harness::pass(format!(
        "{} -> {} -> writeback, {frames} frames {w}x{h} pitch {}, {} {} buffers, colorbar {seen}; PNG {}{}",
        node.path(),
        card.path(),
        fbl.pitches[0],
        bufs.len(),
        bufs[0].backend().map(|b| b.to_string()).unwrap_or_default(),
        png.display(),
        if wb_only { "; CRTC drove the writeback connector alone (driver refuses it cloned with Virtual-1)" } else { "" },
    ))
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Commits; on failure turns on DRM's atomic debug messages, retries once, and fails with what
/// the kernel said.
fn commit_debug(
    out: &mut Output,
    card: &Card,
    fb: &unibuf::interop::drm::ImportedFb<'_>,
    wb: &unibuf::interop::drm::ImportedFb<'_>,
) -> anyhow::Result<unibuf::interop::drm::WritebackFence> {
    match out.commit(card, fb, Some(wb)) {
        Ok(f) => f.context("no writeback fence"),
        Err(e) => {
            let _ = std::fs::write("/sys/module/drm/parameters/debug", "0x1e");
            let k = super::vfio::kmsg_open();
            let again = out.commit(card, fb, Some(wb));
            let _ = std::fs::write("/sys/module/drm/parameters/debug", "0");
            let lines: Vec<String> = k
                .as_ref()
                .map(super::vfio::kmsg_lines)
                .unwrap_or_default()
                .into_iter()
                .filter(|l| {
                    !l.contains("drm_ioctl")
                        && !l.contains("OBJ_GETPROPERTIES")
                        && !l.contains("GETPROPERTY")
                })
                .collect();
            let tail = lines[lines.len().saturating_sub(12)..].join(" | ");
            Err(anyhow::anyhow!(
                "{e} (retry: {:?}); kernel: {tail}",
                again.err()
            ))
        }
    }
}
