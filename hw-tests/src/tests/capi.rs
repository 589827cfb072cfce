//! Hardware tests: the C API's examples (capi/examples), built statically against libunibuf.a by
//! `scripts/capi-test --static` and put into the initramfs by scripts/hw-test, run on the
//! system heap (`--device`: device accessors, so the buffer must be a dma-buf); and the C
//! constraint providers (`ub_*_fill_attr_list`, called by `providers.c` through the C ABI) on
//! vivid, vkms and the edu device, each list compared with what the Rust provider gives for the
//! same device.

use super::env::{heap_names, missing, Feature};
use crate::harness::{pass, skip, Outcome, Test};
use anyhow::{bail, ensure, Context};
use serde_json::Value as Json;
use std::path::Path;
use std::process::Command;
use unibuf::attr::file::list_to_json;
use unibuf::attr::{AttrList, Permission};
use unibuf::interop::drm::{Card, DrmFourcc, PlaneType};
use unibuf::interop::v4l2::VideoNode;
use unibuf::interop::{gpu, vfio};
use unibuf::sys::v4l2::V4L2_PIX_FMT_XBGR32;

const PROVIDERS: &str = "/bin/ub-example-providers";

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "capi::raw_buffer_on_system_heap",
            needs: "/dev/dma_heap/system and /bin/ub-example-raw_buffer",
            run: || example("raw_buffer", Some("exp_name:\tsystem")),
        },
        Test {
            name: "capi::ipc_two_process_on_system_heap",
            needs: "/dev/dma_heap/system and /bin/ub-example-ipc_two_process",
            run: || example("ipc_two_process", None),
        },
        Test {
            name: "capi::providers_error_contract",
            needs: "/bin/ub-example-providers",
            run: providers_errors,
        },
        Test {
            name: "capi::v4l2_fill_matches_rust",
            needs: "vivid (/dev/video*), /bin/ub-example-providers",
            run: v4l2_fill,
        },
        Test {
            name: "capi::drm_plane_fill_matches_rust",
            needs: "vkms (/dev/dri/card*), /bin/ub-example-providers",
            run: drm_fill,
        },
        Test {
            name: "capi::vfio_fill_matches_rust",
            needs: "QEMU edu (1234:11e8), /bin/ub-example-providers",
            run: vfio_fill,
        },
        Test {
            name: "capi::gpu_fill_matches_rust",
            needs: "/bin/ub-example-providers",
            run: gpu_fill,
        },
    ]
}

/// Runs `providers ARGS`: its stdout (the filled list as JSON, or the error contract's report)
/// when it exits 0 with its OK line.
fn providers(args: &[&str]) -> anyhow::Result<Result<String, Outcome>> {
    if !Path::new(PROVIDERS).exists() {
        return Ok(Err(skip(format!(
            "{PROVIDERS} is not in the initramfs (scripts/hw-test builds it with scripts/capi-test --static)"
        ))?));
    }
    let out = Command::new(PROVIDERS)
        .args(args)
        .output()
        .with_context(|| format!("running {PROVIDERS}"))?;
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    ensure!(
        out.status.success(),
        "{PROVIDERS} {}: {}: {so}{se}",
        args.join(" "),
        out.status
    );
    ensure!(
        format!("{so}{se}").contains("providers: OK"),
        "{PROVIDERS}: no OK line: {so}{se}"
    );
    Ok(Ok(so))
}

/// The C provider's list (JSON from `ub_attr_list_dump`) against the Rust provider's: equal key
/// by key; the message names the keys that differ.
fn compare(what: &str, c_json: &str, rust: &AttrList) -> anyhow::Result<Json> {
    let c: Json = serde_json::from_str(c_json)
        .with_context(|| format!("{what}: the C dump is not JSON: {c_json}"))?;
    let r = list_to_json(rust);
    let (Some(co), Some(ro)) = (c.as_object(), r.as_object()) else {
        bail!("{what}: dumps are not JSON objects: C {c}, Rust {r}");
    };
    let mut diff = Vec::new();
    for k in co.keys().chain(ro.keys().filter(|k| !co.contains_key(*k))) {
        if co.get(k) != ro.get(k) {
            diff.push(format!(
                "{k}: C {}, Rust {}",
                co.get(k).map_or("unset".into(), Json::to_string),
                ro.get(k).map_or("unset".into(), Json::to_string)
            ));
        }
    }
    ensure!(
        diff.is_empty(),
        "{what}: the C list differs from the Rust provider's: {}",
        diff.join("; ")
    );
    ensure!(!co.is_empty(), "{what}: the filled list is empty");
    Ok(c)
}

/// `key` (`"image.min_pitch"`) of a JSON dump (nested by buffer type), for the checks that do
/// not rest on the Rust provider.
fn field<'a>(j: &'a Json, key: &str) -> anyhow::Result<&'a Json> {
    j.pointer(&format!("/{}", key.replace('.', "/")))
        .with_context(|| format!("the filled list has no {key}: {j}"))
}

fn providers_errors() -> anyhow::Result<Outcome> {
    let out = match providers(&[])? {
        Ok(o) => o,
        Err(o) => return Ok(o),
    };
    let refused = out.matches("refused as expected").count();
    ensure!(refused >= 19, "only {refused} refusals checked: {out}");
    pass(format!(
        "{refused} refusals (NULL -> BAD_PARAMETER; missing node -> NOT_SUPPORTED, ENOENT, path named; /dev/null -> ENOTTY; all-or-none)"
    ))
}

fn v4l2_fill() -> anyhow::Result<Outcome> {
    let Some(node) = super::v4l2::vivid_node() else {
        return missing(Feature::Vivid, "no vivid capture node");
    };
    let path = node.path().to_string();
    let (w, h) = (640, 480);
    let c = match providers(&["v4l2", &path, "XR24", "640", "480"])? {
        Ok(c) => c,
        Err(o) => return Ok(o),
    };
    let rust = VideoNode::open(&path)?
        .try_format(V4L2_PIX_FMT_XBGR32, w, h)?
        .attr_list()?;
    let j = compare(&format!("v4l2 {path}"), &c, &rust)?;
    // What TRY_FMT must have given, whatever the Rust provider says.
    let pitch = field(&j, "image.min_pitch")?.as_u64().unwrap_or(0);
    let size = field(&j, "image.min_size")?.as_u64().unwrap_or(0);
    ensure!(
        pitch >= u64::from(w) * 4 && size >= pitch * u64::from(h),
        "{path} XR24 {w}x{h}: min_pitch {pitch}, min_size {size} below 4 bytes a pixel"
    );
    pass(format!(
        "{path} XR24 {w}x{h}: C list = Rust list ({} keys; size {size}, pitch {pitch})",
        j.as_object().map_or(0, |o| o.len())
    ))
}

fn drm_fill() -> anyhow::Result<Outcome> {
    let Some(card) = Card::find("vkms") else {
        return missing(
            Feature::VkmsWriteback,
            "no vkms card in /dev/dri (kernel without CONFIG_DRM_VKMS)",
        );
    };
    let path = card.display().to_string();
    let xr24 = DrmFourcc::Xrgb8888 as u32;
    let c = match providers(&["drm", &path, "0", &xr24.to_string(), "1920", "1080"])? {
        Ok(c) => c,
        Err(o) => return Ok(o),
    };
    let k = Card::open(&card)?;
    k.enable_atomic()?; // universal planes: the primary plane is listed
    let (primary, _) = k
        .planes()?
        .into_iter()
        .find(|(_, t)| *t == PlaneType::Primary)
        .context("vkms has no primary plane")?;
    let rust = k.plane_constraints(primary)?.attr_list(xr24, 1920, 1080)?;
    let j = compare(&format!("drm {path} primary plane"), &c, &rust)?;
    pass(format!(
        "{path} primary plane XRGB8888 1920x1080: C list = Rust list ({} keys: {})",
        j.as_object().map_or(0, |o| o.len()),
        j
    ))
}

fn vfio_fill() -> anyhow::Result<Outcome> {
    let devs = vfio::find_pci_devices(vfio::EDU_VENDOR, vfio::EDU_DEVICE);
    let Some(bdf) = devs.first() else {
        return missing(Feature::VfioEdu, "no edu device (1234:11e8) on the PCI bus");
    };
    let bits = vfio::EDU_DMA_BITS.to_string();
    let mut out = Vec::new();
    for (arg, perm) in [("rw", Permission::ReadWrite), ("ro", Permission::ReadOnly)] {
        let c = match providers(&["vfio", bdf, &bits, arg])? {
            Ok(c) => c,
            Err(o) => return Ok(o),
        };
        let mut rust = AttrList::raw(4096)?;
        vfio::VfioConstraints::probe(bdf, vfio::EDU_DMA_BITS)?.fill(&mut rust, perm)?;
        let j = compare(&format!("vfio {bdf} {arg}"), &c, &rust)?;
        // The device's needs as sysfs tells them, independent of the Rust provider.
        let grouped = vfio::iommu_group(bdf).is_some();
        ensure!(
            j.get("physically_contiguous").is_some() != grouped,
            "{bdf}: IOMMU group {grouped}, but physically_contiguous is {:?}",
            j.get("physically_contiguous")
        );
        let page = rustix::param::page_size() as u64;
        ensure!(
            field(&j, "raw.align")?.as_u64() == Some(page),
            "{bdf}: raw.align {}, expected the page size {page}",
            field(&j, "raw.align")?
        );
        out.push(format!("{arg}: {j}"));
    }
    pass(format!("{bdf}: C list = Rust list; {}", out.join("; ")))
}

fn gpu_fill() -> anyhow::Result<Outcome> {
    let uuid = "GPU-6f3a5d1c-0b7e-4c2a-9d41-8e2f7a6b5c4d";
    let c = match providers(&["gpu", uuid, "4096", "256"])? {
        Ok(c) => c,
        Err(o) => return Ok(o),
    };
    let mut rust = AttrList::image(unibuf::layout::PixelFormat::Nv12, 1920, 1080)?;
    gpu::GpuConstraints::new(gpu::GpuId::parse(uuid)?, 4096, 256)?.fill(&mut rust)?;
    let j = compare("gpu", &c, &rust)?;
    pass(format!("{uuid}: C list = Rust list ({j})"))
}

fn example(name: &str, expect: Option<&str>) -> anyhow::Result<Outcome> {
    let bin = format!("/bin/ub-example-{name}");
    if !Path::new(&bin).exists() {
        return skip(format!(
            "{bin} is not in the initramfs (scripts/hw-test builds it with scripts/capi-test --static)"
        ));
    }
    if !heap_names().iter().any(|h| h == "system") {
        return missing(Feature::SystemHeap, "no /dev/dma_heap/system");
    }
    let out = Command::new(&bin)
        .arg("--device")
        .output()
        .with_context(|| format!("running {bin}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "{bin} --device: {}: {text}",
        out.status
    );
    ensure!(
        text.contains(&format!("{name}: OK")),
        "{bin}: no OK line: {text}"
    );
    if let Some(e) = expect {
        ensure!(text.contains(e), "{bin}: expected {e:?} in: {text}");
    }
    pass(format!("{bin} --device"))
}
