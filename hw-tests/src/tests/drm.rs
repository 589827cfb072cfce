//! Hardware tests: drm. vkms as the display: the plane constraint provider, PRIME import with
//! ADDFB2, atomic scanout and readback through the writeback connector; and the camera-to-display
//! pipeline (vivid → vkms → writeback) checked against vivid's colorbar, with one frame saved as a
//! PNG.

use super::v4l2::{check_colorbar, one_plane_each, vivid_colorbar, vivid_node};
use crate::harness::{self, Outcome, Test};
use anyhow::{bail, Context};
use std::sync::Arc;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, BufferType, Key, Permission, Value};
use unibuf::interop::drm::{Card, DrmConstraints, FbLayout, Output};
use unibuf::interop::v4l2::DmabufCapture;
use unibuf::ipc::{Endpoint, ErrorCode, Requested};
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
        Test {
            name: "drm::pipeline_two_process_readonly",
            needs: "vivid, vkms with writeback, a dma-buf backend, unibuf IPC",
            run: pipeline_ipc,
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
    // vkms declares { LINEAR, INVALID } (drivers/gpu/drm/vkms/vkms_plane.c), INVALID being
    // the list's terminator: IN_FORMATS holds LINEAR alone, for every format.
    let set = c.modifier_set(XRGB8888);
    if set != [unibuf::layout::modifier::LINEAR] {
        bail!(
            "vkms primary plane: XRGB8888 modifier set {}, expected [LINEAR] (formats {:x?})",
            unibuf::layout::modifier::names(&set),
            c.formats
        );
    }
    if let Some((f, m)) = c.formats.iter().find(|(_, m)| m.as_slice() != [0]) {
        bail!("vkms primary plane: format {f:#x} has modifiers {m:x?}, expected LINEAR only");
    }
    // The provider's list states that set for scanout; with a CPU accessor it picks LINEAR.
    let disp = c.attr_list(XRGB8888, 64, 64)?;
    if disp.get(Key::ImageModifiers) != Some(&Value::Modifiers(set.clone().into())) {
        bail!("display list: {:?}", disp.get(Key::ImageModifiers));
    }
    let mut cpu = cpu_image_list(Permission::ReadWrite)?;
    cpu.set_image_drm_fourcc(XRGB8888)?.set_image_size(64, 64)?;
    let r = reconcile([&disp, &cpu])?;
    if r.get(Key::OutModifier) != Some(&Value::U64(0)) {
        bail!("picked {:?}, expected LINEAR", r.get(Key::OutModifier));
    }
    if !c.pitch_alignment.is_power_of_two() {
        bail!(
            "pitch alignment {} is not a power of two",
            c.pitch_alignment
        );
    }
    harness::pass(format!(
        "{} plane {}: {} formats (XRGB8888 modifier set {}), pitch alignment {}",
        card.path(),
        c.plane,
        c.formats.len(),
        unibuf::layout::modifier::names(&set),
        c.pitch_alignment
    ))
}

fn reconcile<'a>(lists: impl IntoIterator<Item = &'a AttrList>) -> anyhow::Result<Arc<Reconciled>> {
    Ok(Arc::new(
        unibuf::reconcile::reconcile(lists).map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

/// The list of a CPU accessor of an image: it draws into it (`ReadWrite`) or reads it back
/// (`ReadOnly`).
fn cpu_image_list(perm: Permission) -> anyhow::Result<AttrList> {
    let mut l = AttrList::with_types(&[BufferType::Image])?;
    l.set_accessor_kind(AccessorKind::Cpu)?
        .set_need_cpu_access(true)?
        .set_required_perm(perm)?;
    Ok(l)
}

/// The ADDFB2 layout of a reconciled image list.
pub(super) fn fb_layout(r: &Reconciled) -> anyhow::Result<FbLayout> {
    Ok((&r
        .image()
        .context("no image layout")?
        .drm_framebuffer()
        .context("no ADDFB2 layout")?)
        .into())
}

/// The writeback target: written by the display's writeback connector, read back by the CPU.
pub(super) fn writeback_target(
    disp: &DrmConstraints,
    fourcc: u32,
    w: u32,
    h: u32,
) -> anyhow::Result<(Object, FbLayout)> {
    let rw = reconcile([
        &disp.writeback_attr_list(fourcc, w, h)?,
        &cpu_image_list(Permission::ReadOnly)?,
    ])?;
    let obj = Object::allocator(&rw).name("vkms-writeback").allocate()?;
    Ok((obj, fb_layout(&rw)?))
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
    let rs = reconcile([
        &disp.attr_list(XRGB8888, w, h)?,
        &cpu_image_list(Permission::ReadWrite)?,
    ])?;
    let rd = reconcile([
        &disp.writeback_attr_list(XRGB8888, w, h)?,
        &cpu_image_list(Permission::ReadOnly)?,
    ])?;
    let (mut src, dst) = match (
        Object::allocator(&rs).name("vkms-src").allocate(),
        Object::allocator(&rd).name("vkms-wb").allocate(),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(unibuf::Error::Unavailable { what, why }), _)
        | (_, Err(unibuf::Error::Unavailable { what, why })) => {
            return harness::skip(format!("no dma-buf backend: {what}: {why}"))
        }
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    let fbl = fb_layout(&rs)?;
    let pitch = fbl.pitches[0];
    {
        let mut m = src.map_write()?;
        let mut g = m.write()?;
        let mut v = g.to_vec();
        draw_colorbar(&mut v, w, h, pitch as usize);
        g.copy_from_slice(0, &v)?;
        g.end()?;
    }
    let fb = card.import_framebuffer(src.fd(), &fbl)?;
    let wbl = fb_layout(&rd)?;
    let wb = card.import_framebuffer(dst.fd(), &wbl)?;
    let fence = commit_debug(&mut out, &card, &fb, &wb)?;
    fence.wait(Duration::from_secs(10))?;
    let sm = src.map_read()?;
    let sg = sm.read()?.to_vec();
    let dm = dst.map_read()?;
    let dg = dm.read()?.to_vec();
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
    let bufs = match Object::allocator(&r).allocate_n(4) {
        Ok(o) => o,
        Err(unibuf::Error::Unavailable { what, why }) => {
            return harness::skip(format!("no dma-buf backend: {what}: {why}"))
        }
        Err(e) => return Err(e.into()),
    };
    let fbl = fb_layout(&r)?;
    let img = r.image().context("reconciled list has no image layout")?;
    let v4l = img
        .v4l2_format()
        .context("layout not expressible as a V4L2 format")?;
    node.set_format(cam.fourcc, w, h, &[v4l.bytesperline])?;
    let (wbobj, wbl) = writeback_target(&disp, XRGB8888, w, h)?;
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
    let planes = one_plane_each(&bufs);
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
        let v = g.to_vec();
        let r = check_colorbar(&v, w, h, wpitch);
        if n == frames - 1 {
            let p = artifact_dir().join("unibuf-pipeline-frame-1proc.png");
            crate::pngfile::write_xrgb8888(&p, w, h, wpitch, &v)?;
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
pub(super) fn commit_debug(
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

// ---- The pipeline across two processes ---------------------------------------------------------
//
// The camera process owns vivid and allocates; the display process owns vkms and imports the
// capture buffers read-only over a unibuf IPC endpoint (a socketpair):
//
//   camera  -> display  the camera's unreconciled list
//   display -> camera   the display's unreconciled list (from the vkms plane)
//   camera  -> display  "N <count>", then <count> objects granted read-only
//   camera  -> display  "F <index> <sequence>" per captured frame
//   display -> camera   "OK <colors>" once the frame is scanned out, written back and checked
//   camera  -> display  "Q"; display -> camera "DONE <png path>"
//
// Any failure on the display side is sent as an IPC error, so the camera side reports it.

const IPC_TIMEOUT: Duration = Duration::from_secs(40);

fn pipeline_ipc() -> anyhow::Result<Outcome> {
    if Card::find("vkms").is_none() {
        return harness::skip(
            "no vkms card in /dev/dri (kernel without CONFIG_DRM_VKMS, e.g. Debian's)",
        );
    }
    if vivid_node().is_none() {
        return harness::skip("no vivid capture node");
    }
    let (mut cam_ep, mut disp_ep) = Endpoint::pair()?;
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: the test process is single-threaded; the child only runs the display side and
    // leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        drop(cam_ep);
        // Die with the test process, and hold none of its fds (the runner waits for EOF on its
        // result pipe): keep only stdio and the endpoint.
        // SAFETY: prctl(PR_SET_PDEATHSIG) has no memory-safety preconditions.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        close_other_fds(&[0, 1, 2, rustix::fd::AsRawFd::as_raw_fd(&disp_ep.as_fd())]);
        // Should anything block for good, end this process before the runner's limit.
        // SAFETY: alarm has no memory-safety preconditions.
        unsafe { libc::alarm(100) };
        let code = match display_side(&mut disp_ep) {
            Ok(()) => 0,
            Err(e) => {
                let msg = format!("display process, at {}: {e:#}", last_step());
                let _ = disp_ep.send_error(ErrorCode::Other, &msg);
                1
            }
        };
        let _ = std::io::stdout().flush();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(disp_ep);
    let res =
        camera_side(&mut cam_ep).with_context(|| format!("camera process, at {}", last_step()));
    drop(cam_ep);
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let note = res?;
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("display process ended with status {status:#x}");
    }
    harness::pass(note)
}

fn camera_side(ep: &mut Endpoint) -> anyhow::Result<String> {
    ep.set_recv_timeout(Some(IPC_TIMEOUT))?;
    let node = vivid_node().context("no vivid node")?;
    vivid_colorbar(&node)?;
    let cam = node.try_format(V4L2_PIX_FMT_XBGR32, 640, 480)?;
    let cam_list = cam.attr_list()?;
    step("camera", "export list");
    ep.export_lists([&cam_list])?;
    step("camera", "import display list");
    let theirs = ep.import_lists().context("receiving the display's list")?;
    let mut lists = vec![cam_list];
    lists.extend(theirs.slots.iter().cloned());
    let r = reconcile(&lists)?;
    step("camera", "allocate");
    let bufs = Object::allocator(&r).allocate_n(4)?;
    step("camera", "export objects");
    ep.send_data(format!("N {}", bufs.len()).as_bytes())?;
    for b in &bufs {
        ep.export_object(b, Permission::ReadOnly)?;
    }
    let img = r.image().context("no image layout")?;
    let v4l = img
        .v4l2_format()
        .context("layout not expressible as a V4L2 format")?;
    node.set_format(cam.fourcc, cam.width, cam.height, &[v4l.bytesperline])?;
    let planes = one_plane_each(&bufs);
    step("camera", "stream");
    let mut cap = DmabufCapture::new(&node, planes)?;
    for i in 0..cap.len() {
        cap.queue(i)?;
    }
    cap.start()?;
    let frames = 6;
    let mut seqs = Vec::new();
    let mut seen = String::new();
    for _ in 0..frames {
        let f = cap.dequeue(Duration::from_secs(10))?;
        ep.send_data(format!("F {} {}", f.index, f.sequence).as_bytes())?;
        let reply = String::from_utf8_lossy(&ep.recv_data()?).into_owned();
        seen = reply
            .strip_prefix("OK ")
            .with_context(|| format!("display answered {reply:?}"))?
            .to_string();
        seqs.push(f.sequence);
        cap.queue(f.index)?;
    }
    cap.stop()?;
    ep.send_data(b"Q")?;
    let done = String::from_utf8_lossy(&ep.recv_data()?).into_owned();
    let png = done
        .strip_prefix("DONE ")
        .with_context(|| format!("display answered {done:?}"))?;
    Ok(format!(
        "{} -> [IPC, read-only] -> display process: vkms scanout -> writeback; {frames} frames seq {seqs:?}, {w}x{h} pitch {}, {} {} buffers; last frame {seen}; PNG {png}",
        node.path(),
        v4l.bytesperline,
        bufs.len(),
        bufs[0].backend().map(|b| b.to_string()).unwrap_or_default(),
        w = cam.width,
        h = cam.height,
    ))
}

fn display_side(ep: &mut Endpoint) -> anyhow::Result<()> {
    ep.set_recv_timeout(Some(IPC_TIMEOUT))?;
    step("display", "import camera list");
    let theirs = ep.import_lists().context("receiving the camera's list")?;
    let cam_list = theirs.slots.first().context("no camera list")?.clone();
    let fourcc = match cam_list.get(Key::ImageFormat) {
        Some(Value::Format(f)) => f.drm_fourcc().context("camera format has no DRM fourcc")? as u32,
        other => bail!("camera list has image.format {other:?}"),
    };
    let size = |k: Key| -> anyhow::Result<u32> {
        let v = cam_list.get(k).and_then(|v| v.as_u64());
        let v = v.with_context(|| format!("camera list has no {}", k.name()))?;
        Ok(u32::try_from(v)?)
    };
    let (w, h) = (size(Key::ImageWidth)?, size(Key::ImageHeight)?);
    step("display", "open vkms");
    let card = Card::open(Card::find("vkms").context("no vkms card")?)?;
    if !card.enable_atomic()? {
        bail!("no writeback connector support");
    }
    let mut out = Output::find(&card, w, h)?;
    let disp = card.plane_constraints(out.plane)?;
    let own = [disp.attr_list(fourcc, w, h)?];
    step("display", "export list");
    ep.export_lists(&own)?;
    let n: usize = String::from_utf8_lossy(&ep.recv_data()?)
        .strip_prefix("N ")
        .and_then(|s| s.parse().ok())
        .context("expected the buffer count")?;
    let mut bufs = Vec::new();
    step("display", "import objects");
    for _ in 0..n {
        // The reconciled list comes with each object and is validated against our own list.
        let o = ep.import_object(Requested::ReadOnly, Some(&own))?;
        if o.permission() != Permission::ReadOnly {
            bail!("imported buffer holds {}", o.permission());
        }
        bufs.push(o);
    }
    // Read-only is enforced: this side gets no writable CPU view.
    if bufs[0].map_write().is_ok() {
        bail!("a read-only import yielded a writable CPU map");
    }
    let fbl = fb_layout(bufs[0].list())?;
    step("display", "framebuffers");
    let fbs = bufs
        .iter()
        .map(|b| card.import_framebuffer(b.fd(), &fbl))
        .collect::<Result<Vec<_>, _>>()?;
    step("display", "writeback buffer");
    let (wbobj, wbl) = writeback_target(&disp, fourcc, w, h)?;
    let wb = card.import_framebuffer(wbobj.fd(), &wbl)?;
    let wm = wbobj.map_read()?;
    let wpitch = wbl.pitches[0] as usize;
    loop {
        let msg = String::from_utf8_lossy(&ep.recv_data()?).into_owned();
        if msg == "Q" {
            break;
        }
        let mut it = msg.split(' ');
        let (Some("F"), Some(i), Some(seq)) = (it.next(), it.next(), it.next()) else {
            bail!("unexpected message {msg:?}");
        };
        let i: usize = i.parse()?;
        let fb = fbs.get(i).with_context(|| format!("no buffer {i}"))?;
        step("display", &format!("commit {i}"));
        let fence = commit_debug(&mut out, &card, fb, &wb)?;
        fence.wait(Duration::from_secs(10))?;
        let g = wm.read()?;
        let r = check_colorbar(&g.to_vec(), w, h, wpitch);
        g.end()?;
        let seen = r.with_context(|| format!("written-back frame (capture seq {seq})"))?;
        ep.send_data(format!("OK {seen}").as_bytes())?;
    }
    // The last written-back frame, as a PNG.
    let p = artifact_dir().join("unibuf-pipeline-frame.png");
    {
        let g = wm.read()?;
        crate::pngfile::write_xrgb8888(&p, w, h, wpitch, &g.to_vec())?;
        g.end()?;
    }
    let wb_only = out.writeback_only();
    out.disable(&card)?;
    let bytes = std::fs::read(&p)?;
    println!(
        "PIPELINE-PNG {} ({} bytes{})",
        p.display(),
        bytes.len(),
        if wb_only {
            "; CRTC drove the writeback connector alone"
        } else {
            ""
        }
    );
    // The VM's file system goes away with it: the file also goes out base64, so the host can
    // recover it from the results log.
    println!("PIPELINE-PNG-BASE64 {}", base64(&bytes));
    ep.send_data(format!("DONE {}", p.display()).as_bytes())?;
    Ok(())
}

/// Closes every fd of this process except `keep`.
pub(super) fn close_other_fds(keep: &[i32]) {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if !keep.contains(&fd) {
            // SAFETY: closing an fd this process holds; nothing in this fresh child uses the
            // closed ones (the read_dir fd is already closed and fails harmlessly).
            unsafe { libc::close(fd) };
        }
    }
}

thread_local! {
    static STEP: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Records where this side of the pipeline is, for the failure message.
fn step(side: &str, what: &str) {
    STEP.with(|s| *s.borrow_mut() = format!("{side}: {what}"));
}

fn last_step() -> String {
    STEP.with(|s| s.borrow().clone())
}
