//! Hardware tests: drm. vkms as the display: the plane constraint provider, PRIME import with
//! ADDFB2, atomic scanout and readback through the writeback connector; and the camera-to-display
//! pipeline (vivid → vkms → writeback) checked against vivid's colorbar, with one frame saved as a
//! PNG.

use super::v4l2::{
    alloc_dmabuf, check_colorbar, dma_buf_sync, vivid_colorbar, vivid_node, Buf, CpuMap,
};
use crate::harness::{self, Outcome, Test};
use anyhow::{bail, Context};
use rustix::fd::AsFd;
use std::time::Duration;
use unibuf::interop::drm::{Card, FbLayout, Output, MOD_LINEAR};
use unibuf::interop::v4l2::{CapturePlane, DmabufCapture};
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

fn layout(w: u32, h: u32, pitch: u32) -> FbLayout {
    FbLayout {
        width: w,
        height: h,
        fourcc: XRGB8888,
        modifier: Some(MOD_LINEAR),
        pitches: vec![pitch],
        offsets: vec![0],
    }
}

fn compare_rgb(a: &[u8], b: &[u8], w: u32, h: u32, pitch: usize) -> anyhow::Result<()> {
    for y in 0..h as usize {
        for x in 0..w as usize {
            let o = y * pitch + x * 4;
            if a[o..o + 3] != b[o..o + 3] {
                bail!(
                    "pixel ({x},{y}) differs: scanned out {:02x?}, written back {:02x?}",
                    &a[o..o + 3],
                    &b[o..o + 3]
                );
            }
        }
    }
    Ok(())
}

fn draw_colorbar(map: &mut CpuMap, w: u32, h: u32, pitch: usize) {
    let bytes = map.bytes_mut();
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
    let align = card.pitch_alignment(32)?.max(64);
    let pitch = (w * 4).div_ceil(align) * align;
    let size = pitch as u64 * h as u64;
    let (Some(src), Some(dst)) = (alloc_dmabuf(size)?, alloc_dmabuf(size)?) else {
        return harness::skip("no dma-buf backend");
    };
    let mut sm = CpuMap::new(src.fd.as_fd(), src.size as usize, true)?;
    dma_buf_sync(src.fd.as_fd(), true, true)?;
    draw_colorbar(&mut sm, w, h, pitch as usize);
    dma_buf_sync(src.fd.as_fd(), false, true)?;
    let dm = CpuMap::new(dst.fd.as_fd(), dst.size as usize, true)?;
    dm.fill(0x11);
    let fb = card.import_framebuffer(src.fd.as_fd(), &layout(w, h, pitch))?;
    let wb = card.import_framebuffer(dst.fd.as_fd(), &layout(w, h, pitch))?;
    let fence = out
        .commit(&card, &fb, Some(&wb))?
        .context("no writeback fence")?;
    fence.wait(Duration::from_secs(10))?;
    dma_buf_sync(dst.fd.as_fd(), true, false)?;
    let r = compare_rgb(sm.bytes(), dm.bytes(), w, h, pitch as usize);
    let seen = check_colorbar(dm.bytes(), w, h, pitch as usize);
    dma_buf_sync(dst.fd.as_fd(), false, false)?;
    out.disable(&card)?;
    r?;
    let seen = seen?;
    harness::pass(format!(
        "{} {w}x{h} XRGB8888 pitch {pitch}: scanout of a {} buffer written back pixel-exact ({seen})",
        card.path(),
        src.backend
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
    let disp = card.plane_constraints(out.plane)?;
    if !disp.supports_linear(XRGB8888) {
        bail!("plane lacks XRGB8888/linear");
    }
    if out.writeback.is_none() {
        return harness::skip("vkms has no writeback connector");
    }
    // Reconcile the camera's and the display's lists into one layout.
    let lists = [cam.attr_list()?, disp.attr_list(XRGB8888, w, h)?];
    let r = unibuf::reconcile::reconcile(&lists).map_err(|e| anyhow::anyhow!("{e}"))?;
    let img = r.image().context("reconciled list has no image layout")?;
    let fbl: FbLayout = (&img
        .drm_framebuffer()
        .context("layout not expressible for ADDFB2")?)
        .into();
    let pitch = fbl.pitches[0];
    let size = r.size();
    node.set_format(cam.fourcc, w, h, &[pitch])?;
    let mut bufs: Vec<Buf> = Vec::new();
    for _ in 0..4 {
        bufs.push(alloc_dmabuf(size)?.context("no dma-buf backend")?);
    }
    let wbbuf = alloc_dmabuf(size)?.context("no dma-buf backend")?;
    let fbs = bufs
        .iter()
        .map(|b| card.import_framebuffer(b.fd.as_fd(), &fbl))
        .collect::<Result<Vec<_>, _>>()?;
    let wb = card.import_framebuffer(wbbuf.fd.as_fd(), &fbl)?;
    let planes = bufs
        .iter()
        .map(|b| {
            vec![CapturePlane {
                fd: b.fd.as_fd(),
                length: b.size as u32,
            }]
        })
        .collect();
    let mut cap = DmabufCapture::new(&node, planes)?;
    for i in 0..cap.len() {
        cap.queue(i)?;
    }
    cap.start()?;
    let wm = CpuMap::new(wbbuf.fd.as_fd(), wbbuf.size as usize, false)?;
    let frames = 5;
    let mut seen = String::new();
    let mut png = None;
    for n in 0..frames {
        let f = cap.dequeue(Duration::from_secs(10))?;
        let fence = out
            .commit(&card, &fbs[f.index], Some(&wb))?
            .context("no fence")?;
        fence.wait(Duration::from_secs(10))?;
        dma_buf_sync(wbbuf.fd.as_fd(), true, false)?;
        let r = check_colorbar(wm.bytes(), w, h, pitch as usize);
        if n == frames - 1 {
            let p = artifact_dir().join("unibuf-pipeline-frame.png");
            unibuf::interop::png::write_xrgb8888(&p, w, h, pitch as usize, wm.bytes())?;
            png = Some(p);
        }
        dma_buf_sync(wbbuf.fd.as_fd(), false, false)?;
        seen =
            r.with_context(|| format!("written-back frame {} (capture seq {})", n, f.sequence))?;
        cap.queue(f.index)?;
    }
    cap.stop()?;
    out.disable(&card)?;
    let png = png.context("no PNG")?;
    // The VM's file system goes away with it: also print the file, base64, so the host can
    // recover it from the results log.
    let bytes = std::fs::read(&png)?;
    println!("PIPELINE-PNG {} ({} bytes)", png.display(), bytes.len());
    println!("PIPELINE-PNG-BASE64 {}", base64(&bytes));
    harness::pass(format!(
        "{} -> {} -> writeback, {frames} frames {w}x{h} pitch {pitch}, colorbar {seen}; PNG {}",
        node.path(),
        card.path(),
        png.display()
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
