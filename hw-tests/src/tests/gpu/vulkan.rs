//! Vulkan tests: images over unibuf layouts, the pitch rule, the GPU id.
//!
//! Each test opens the first NVIDIA Vulkan device (else the first device) and skips with the
//! reason where there is no loader, no driver, or no device with the extensions it needs.

use crate::harness::{pass, skip, Outcome, Test};
use anyhow::{anyhow, bail, ensure, Context};
use std::sync::Arc;
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::interop::gpu::GpuId;
use unibuf::interop::vulkan::ash::vk;
use unibuf::interop::vulkan::{packed_planes, VkBuffer, VkImage, VkMemory, Vulkan, MOD_LINEAR};
use unibuf::layout::{align_up, ImageLayout, PixelFormat};
use unibuf::object::Object;
use unibuf::reconcile::{reconcile, Reconciled};
use unibuf::Error;

/// The Vulkan tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "gpu::vulkan_provider",
            needs: "a Vulkan device with VK_EXT_image_drm_format_modifier",
            run: provider,
        },
        Test {
            name: "gpu::vulkan_images_xrgb8888_nv12",
            needs: "a Vulkan device with VK_EXT_image_drm_format_modifier and dma-buf or host \
                    memory import",
            run: images,
        },
        Test {
            name: "gpu::vulkan_pitch_rule",
            needs: "a Vulkan device with VK_EXT_image_drm_format_modifier and dma-buf or host \
                    memory import",
            run: pitch_rule,
        },
        Test {
            name: "gpu::vulkan_readonly_handle_refused",
            needs: "a Vulkan device with dma-buf or host memory import",
            run: readonly_refused,
        },
        Test {
            name: "gpu::vulkan_gpu_id",
            needs: "a Vulkan device and a CUDA device (nvidia-smi optional)",
            run: gpu_id,
        },
    ]
}

/// The device the tests use, or why there is none (a skip reason).
fn open() -> Result<Vulkan, String> {
    Vulkan::available()?;
    let devs = Vulkan::devices().map_err(|e| e.to_string())?;
    let pick = devs
        .iter()
        .find(|d| d.vendor_id == 0x10de)
        .or(devs.first())
        .ok_or_else(|| "the Vulkan loader finds no device (no driver installed?)".to_string())?;
    Vulkan::open(pick.index).map_err(|e| e.to_string())
}

/// `open`, plus the extensions the image tests need; `Err`: the skip reason.
fn open_for_images() -> Result<Vulkan, String> {
    let vk = open()?;
    let c = vk.caps();
    if !c.drm_format_modifier {
        return Err(format!(
            "{} lacks VK_EXT_image_drm_format_modifier",
            vk.label()
        ));
    }
    if !c.dma_buf && !c.host_memory {
        return Err(format!(
            "{} has neither VK_EXT_external_memory_dma_buf nor VK_EXT_external_memory_host",
            vk.label()
        ));
    }
    Ok(vk)
}

macro_rules! vk_or_skip {
    ($open:expr) => {
        match $open {
            Ok(v) => v,
            Err(why) => return skip(why),
        }
    };
}

fn reconciled<'a>(
    lists: impl IntoIterator<Item = &'a AttrList>,
) -> anyhow::Result<Arc<Reconciled>> {
    Ok(Arc::new(reconcile(lists).map_err(|c| anyhow!("{c}"))?))
}

fn cpu_list(mut l: AttrList) -> anyhow::Result<AttrList> {
    l.set_accessor_kind(AccessorKind::Cpu)?
        .set_need_cpu_access(true)?
        .set_required_perm(Permission::ReadWrite)?;
    Ok(l)
}

fn gpu_list(vk: &Vulkan, mut l: AttrList) -> anyhow::Result<AttrList> {
    l.set_required_perm(Permission::ReadWrite)?;
    vk.fill(&mut l)?;
    Ok(l)
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn provider() -> anyhow::Result<Outcome> {
    let vk = vk_or_skip!(open());
    let c = vk.caps().clone();
    if !c.drm_format_modifier {
        return skip(format!(
            "{} lacks VK_EXT_image_drm_format_modifier",
            vk.label()
        ));
    }
    let mut note = format!(
        "{} uuid {} Vulkan {}.{}.{} driver {:?}; dma_buf={} host_memory={} \
         minImportedHostPointerAlignment={} optimalBufferCopyRowPitchAlignment={}",
        vk.label(),
        vk.gpu_id(),
        c.api_version.0,
        c.api_version.1,
        c.api_version.2,
        c.driver.trim(),
        c.dma_buf,
        c.host_memory,
        c.min_imported_host_pointer_alignment,
        c.optimal_buffer_copy_row_pitch_alignment
    );
    for f in [PixelFormat::Xrgb8888, PixelFormat::Nv12] {
        let mods = vk.modifiers(f)?;
        ensure!(
            mods.iter().any(|m| m.modifier == MOD_LINEAR),
            "{}: no LINEAR modifier among {mods:?}",
            f.name()
        );
        let mut import = Vec::new();
        for (name, h) in [
            (
                "host",
                vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT,
            ),
            ("dma-buf", vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT),
        ] {
            import.push(match vk.image_import_support(f, 640, 480, h) {
                Ok(()) => format!("{name}: importable"),
                Err(e) => format!("{name}: {e}"),
            });
        }
        let pa = vk.linear_pitch_alignment(f);
        let gc = vk.constraints(Some(f));
        let set = vk.importable_modifiers(f, 640, 480)?;
        ensure!(
            set.iter().all(|m| mods.iter().any(|d| d.modifier == *m)),
            "{}: the importable set {set:x?} has modifiers the driver does not list",
            f.name()
        );
        note += &format!(
            "; {} modifiers {mods:?}; images over {}; modifier set for a list: {set:#x?}; ",
            f.name(),
            import.join(", ")
        );
        match (pa, gc) {
            (Ok(pa), Ok(gc)) => {
                note += &format!(
                    "{pa}; list: pitch_align {} base_align {}",
                    gc.pitch_alignment, gc.alignment
                )
            }
            (Err(e), _) | (_, Err(e)) => bail!("{note}: pitch rule: {e}"),
        }
    }
    pass(note)
}

/// Compares plane rows of `got` (laid out as `gl`: pitch and offset per plane, or packed when
/// `gl` is `None`) with `want` (laid out as `wl`, likewise).
fn compare_planes(
    layout: &ImageLayout,
    got: &[u8],
    got_packed: bool,
    want: &[u8],
    want_packed: bool,
    what: &str,
) -> anyhow::Result<()> {
    let packed = packed_planes(layout);
    for (i, (p, (poff, row, rows))) in layout.planes.iter().zip(&packed.planes).enumerate() {
        for y in 0..*rows {
            let at = |is_packed: bool| -> usize {
                if is_packed {
                    (poff + y * row) as usize
                } else {
                    (p.offset + y * p.pitch) as usize
                }
            };
            let (g0, w0) = (at(got_packed), at(want_packed));
            let g = got
                .get(g0..g0 + *row as usize)
                .context("row outside the buffer")?;
            let w = want
                .get(w0..w0 + *row as usize)
                .context("row outside the buffer")?;
            if g != w {
                let x = g.iter().zip(w).position(|(a, b)| a != b).unwrap_or(0);
                bail!(
                    "{what}: plane {i} row {y} byte {x} is {:#04x}, expected {:#04x} (pitch {})",
                    g[x],
                    w[x],
                    p.pitch
                );
            }
        }
    }
    Ok(())
}

/// One image round trip: CPU writes a pattern through the object's map; the GPU copies the
/// image to a buffer (packed) and a second pattern from the buffer back into the image.
fn round_trip(
    vk: &Vulkan,
    format: PixelFormat,
    w: u32,
    h: u32,
    cpu_pitch_align: Option<u64>,
) -> anyhow::Result<String> {
    let mut cpu = cpu_list(AttrList::image(format, w, h)?)?;
    if let Some(a) = cpu_pitch_align {
        cpu.set_pitch_align(a)?;
    }
    let gpu = gpu_list(vk, AttrList::image(format, w, h)?)?;
    let r = reconciled([&cpu, &gpu])?;
    let layout = r.image().context("no image layout")?.clone();
    let mut img_obj = Object::allocate(&r).context("allocate the image object")?;
    let p = pattern(img_obj.size() as usize, 1);
    {
        let mut m = img_obj.map_write()?;
        m.write()?.copy_from_slice(0, &p)?;
    }
    let packed = packed_planes(&layout);
    let page = rustix::param::page_size() as u64;
    let half = packed.size.next_multiple_of(page);
    let rb = reconciled([
        &cpu_list(AttrList::raw(2 * half)?)?,
        &gpu_list(vk, AttrList::raw(2 * half)?)?,
    ])?;
    let mut buf_obj = Object::allocate(&rb).context("allocate the buffer object")?;
    let q = pattern(packed.size as usize, 7);
    {
        let mut m = buf_obj.map_write()?;
        let mut g = m.write()?;
        g.fill(0);
        g.copy_from_slice(half as usize, &q)?;
    }
    let mem_i = VkMemory::import(vk, &img_obj).context("import the image object")?;
    let image = VkImage::new(&mem_i).context("create the image")?;
    let mem_b = VkMemory::import(vk, &buf_obj).context("import the buffer object")?;
    let buf = VkBuffer::new(&mem_b, 0, 2 * half).context("create the buffer")?;

    image
        .copy_to_buffer(&buf, 0)
        .context("vkCmdCopyImageToBuffer")?;
    let got = buf_obj.map_read()?.read()?.to_vec();
    compare_planes(&layout, &got, true, &p, false, "image→buffer")?;

    image
        .copy_from_buffer(&buf, half)
        .context("vkCmdCopyBufferToImage")?;
    let img = img_obj.map_read()?.read()?.to_vec();
    compare_planes(&layout, &img, false, &q, true, "buffer→image")?;
    // The padding after each row (pitch - row bytes) is the image's, not the copy's: unchanged.
    for (i, (pl, (_, row, rows))) in layout.planes.iter().zip(&packed.planes).enumerate() {
        for y in 0..*rows {
            let s = (pl.offset + y * pl.pitch + row) as usize;
            let e = (pl.offset + (y + 1) * pl.pitch) as usize;
            ensure!(
                img[s..e] == p[s..e],
                "buffer→image wrote the padding of plane {i} row {y} (bytes {s}..{e})"
            );
        }
    }
    Ok(format!(
        "{} {}x{} pitches {:?} offsets {:?} via {:?} ({}): byte-exact both ways",
        format.name(),
        w,
        h,
        layout.planes.iter().map(|p| p.pitch).collect::<Vec<_>>(),
        layout.planes.iter().map(|p| p.offset).collect::<Vec<_>>(),
        mem_i.path(),
        img_obj
            .backend()
            .map(|b| b.to_string())
            .unwrap_or_else(|| "?".into()),
    ))
}

fn images() -> anyhow::Result<Outcome> {
    let vk = vk_or_skip!(open_for_images());
    let mut notes = Vec::new();
    let mut failed = false;
    for (f, w, h, a) in [
        (PixelFormat::Xrgb8888, 1001, 67, None),
        // A pitch above the driver's own (256-aligned): the explicit pitch is honoured.
        (PixelFormat::Xrgb8888, 1001, 67, Some(256)),
        (PixelFormat::Nv12, 202, 66, None),
        (PixelFormat::Nv12, 1920, 1080, None),
    ] {
        // Every case runs, so that one report shows them all.
        match round_trip(&vk, f, w, h, a) {
            Ok(n) => notes.push(n),
            Err(e) => {
                failed = true;
                notes.push(format!(
                    "FAILED {} {w}x{h} (CPU pitch align {a:?}): {e:#}",
                    f.name()
                ));
            }
        }
    }
    let text = format!("{}: {}", vk.label(), notes.join("; "));
    if failed {
        bail!(text);
    }
    pass(text)
}

fn pitch_rule() -> anyhow::Result<Outcome> {
    let vk = vk_or_skip!(open_for_images());
    let mut notes = Vec::new();
    for (f, w, h) in [
        (PixelFormat::Xrgb8888, 1001u32, 16u32),
        (PixelFormat::Nv12, 202, 16),
    ] {
        let pa = vk.linear_pitch_alignment(f)?;
        let bpp0 = u64::from(f.planes()[0].bpp) / 8;
        let row = u64::from(w) * bpp0;
        let least = align_up(row, pa.alignment).context("overflow")?;
        // With the Vulkan list, the reconciled pitch is the least valid one.
        let gpu = gpu_list(&vk, AttrList::image(f, w, h)?)?;
        let cpu = cpu_list(AttrList::image(f, w, h)?)?;
        let r = reconciled([&cpu, &gpu])?;
        let got = r.image().context("no layout")?.planes[0].pitch;
        ensure!(
            got == least,
            "{}: reconciled pitch {got}, expected align_up({row}, {}) = {least}",
            f.name(),
            pa.alignment
        );
        if least == row {
            notes.push(format!(
                "{}: alignment {} keeps every {w}-pixel row of {row} bytes (nothing to refuse)",
                f.name(),
                pa.alignment
            ));
            continue;
        }
        // A pitch below the rule, stated exactly by another accessor: the Vulkan list
        // conflicts with it at reconciliation ...
        let mut exact = cpu_list(AttrList::image(f, w, h)?)?;
        exact.set_exact_pitch(row)?;
        ensure!(
            reconcile([&exact, &gpu]).is_err(),
            "{}: exact pitch {row} reconciled with the Vulkan list",
            f.name()
        );
        // ... and an object laid out without the Vulkan list is refused at image creation.
        let r = reconciled([&exact])?;
        let obj = Object::allocate(&r)?;
        let mem = VkMemory::import(&vk, &obj)?;
        let e = match VkImage::new(&mem) {
            Ok(_) => bail!(
                "{}: an image with pitch {row} (below the alignment {}) was created",
                f.name(),
                pa.alignment
            ),
            Err(e) => e.to_string(),
        };
        ensure!(
            matches!(VkImage::new(&mem), Err(Error::InvalidArgument(_)))
                && e.contains(&format!("pitch {row}"))
                && e.contains(&format!("alignment of {} bytes", pa.plane_alignment[0]))
                && e.contains(&format!("width {w}")),
            "unclear refusal: {e}"
        );
        notes.push(format!("{pa}; refused: {e}"));
    }
    pass(notes.join("; "))
}

fn readonly_refused() -> anyhow::Result<Outcome> {
    let vk = vk_or_skip!(open());
    if !vk.caps().dma_buf && !vk.caps().host_memory {
        return skip(format!("{} has no memory import extension", vk.label()));
    }
    let r = reconciled([
        &cpu_list(AttrList::raw(65536)?)?,
        &gpu_list(&vk, AttrList::raw(65536)?)?,
    ])?;
    let obj = Object::allocate(&r)?;
    let ro = obj.dup_with(Permission::ReadOnly)?;
    let e = match VkMemory::import(&vk, &ro) {
        Ok(_) => bail!("a read-only handle was imported"),
        Err(e) => e.to_string(),
    };
    ensure!(e.contains("read-only"), "unclear refusal: {e}");
    let rw = VkMemory::import(&vk, &obj).context("the read-write handle")?;
    pass(format!(
        "read-only refused: {e}; read-write imported via {:?}",
        rw.path()
    ))
}

fn nvidia_smi_uuids() -> Result<Vec<GpuId>, String> {
    let out = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .map_err(|e| format!("nvidia-smi -L: {e}"))?;
    if !out.status.success() {
        return Err(format!("nvidia-smi -L exited with {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ids = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.split("UUID: ").nth(1) {
            let u = rest.trim_end_matches(')').trim();
            if u.starts_with("GPU-") {
                ids.push(GpuId::parse(u).map_err(|e| e.to_string())?);
            }
        }
    }
    Ok(ids)
}

fn gpu_id() -> anyhow::Result<Outcome> {
    if let Err(why) = Vulkan::available() {
        return skip(why);
    }
    let devs = match Vulkan::devices() {
        Ok(d) if !d.is_empty() => d,
        Ok(_) => return skip("the Vulkan loader finds no device"),
        Err(e @ Error::Unavailable { .. }) => return skip(e.to_string()),
        Err(e) => return Err(e.into()),
    };
    let cuda = match unibuf::interop::cuda::Cuda::open(0) {
        Ok(c) => c,
        Err(e @ Error::Unavailable { .. }) => return skip(format!("no CUDA device: {e}")),
        Err(e) => return Err(e.into()),
    };
    let id = cuda.gpu_id();
    let Some(d) = devs.iter().find(|d| d.uuid == id) else {
        bail!(
            "{} has UUID {id}; no Vulkan device has it: {:?}",
            cuda.label(),
            devs.iter()
                .map(|d| format!("{} {}", d.name, d.uuid))
                .collect::<Vec<_>>()
        );
    };
    let vk = Vulkan::open_gpu(id)?;
    ensure!(vk.gpu_id() == id, "open_gpu({id}) opened {}", vk.gpu_id());
    let smi = match nvidia_smi_uuids() {
        Ok(ids) => {
            ensure!(ids.contains(&id), "nvidia-smi -L lists {ids:?}, not {id}");
            format!("= nvidia-smi -L GPU-{id}")
        }
        Err(why) => format!("(nvidia-smi part skipped: {why})"),
    };
    pass(format!(
        "Vulkan device {} ({}) deviceUUID {id} = {} UUID {smi}",
        d.index,
        d.name,
        cuda.label()
    ))
}
