//! List files: TOML/JSON loading, errors naming file/line/key, JSON round trip, dumps.

use unibuf::attr::file::{list_to_json, list_to_text, parse_json, parse_toml};
use unibuf::attr::{AttrList, GpuId, Key, Padding, Value};
use unibuf::layout::PixelFormat;
use unibuf::reconcile::dump::reconciled_to_json;
use unibuf::reconcile::reconcile;

const CAMERA: &str = r#"
types = ["image"]
accessor_name = "camera"
accessor_kind = "camera"
required_permission = "read_write"
gpu_ids = ["GPU-6f1c2a52-0000-0000-0000-000000000002", "6f1c2a52000000000000000000000001"]
gpu_cache = { "GPU-6f1c2a52-0000-0000-0000-000000000001" = false }
vidmem_gpu = "6f1c2a52-0000-0000-0000-000000000001"

[image]
format = "nv12"
width = 1920
height = 1080
pitch_align = 0x40
padding = { bottom = 8 }
modifier = "linear"
"#;

#[test]
fn toml_loads_every_kind() {
    let l = parse_toml(CAMERA, "camera.toml").unwrap();
    assert_eq!(
        l.get(Key::ImageFormat),
        Some(&Value::Format(PixelFormat::Nv12))
    );
    assert_eq!(l.get(Key::ImagePitchAlign), Some(&Value::U64(64)));
    assert_eq!(l.get(Key::ImageModifier), Some(&Value::U64(0)));
    assert_eq!(
        l.get(Key::ImagePadding),
        Some(&Value::Padding(Padding {
            bottom: 8,
            ..Padding::default()
        }))
    );
    assert_eq!(l.accessor_name(), Some("camera"));
    let g1 = GpuId::parse("6f1c2a52-0000-0000-0000-000000000001").unwrap();
    let g2 = GpuId::parse("6f1c2a52-0000-0000-0000-000000000002").unwrap();
    assert_eq!(l.get(Key::GpuIds), Some(&Value::GpuIds(vec![g1, g2])));
    assert_eq!(
        l.get(Key::GpuCache),
        Some(&Value::GpuFlags(vec![(g1, false)]))
    );
    assert_eq!(l.get(Key::VidMemGpu), Some(&Value::Gpu(g1)));
    assert!(parse_toml("gpu_ids = [\"not-a-uuid\"]", "g.toml")
        .unwrap_err()
        .to_string()
        .contains("not a GPU UUID"));
}

#[test]
fn json_round_trip() {
    let l = parse_toml(CAMERA, "camera.toml").unwrap();
    let j = serde_json::to_string(&list_to_json(&l)).unwrap();
    let back = parse_json(&j, "camera.json").unwrap();
    assert_eq!(back, l);
    let mut p = AttrList::pyramid(PixelFormat::Grey, 64, 48, 4, 0.5).unwrap();
    p.set_base_align(256).unwrap();
    let j = serde_json::to_string(&list_to_json(&p)).unwrap();
    assert_eq!(parse_json(&j, "p.json").unwrap(), p);
}

fn err(text: &str) -> String {
    parse_toml(text, "x.toml").unwrap_err().to_string()
}

#[test]
fn errors_name_file_line_and_key() {
    let e = err("types = [\"image\"]\n\n[image]\nformat = \"NV13\"\n");
    assert!(e.starts_with("x.toml:4: key `image.format`"), "{e}");
    assert!(e.contains("unknown pixel format"), "{e}");

    let e = err("types = [\"image\"]\n[image]\nwidth = 0\n");
    assert!(e.starts_with("x.toml:3: key `image.width`"), "{e}");
    assert!(e.contains("must not be zero"), "{e}");

    let e = err("types = [\"raw\"]\n[raw]\nsize = 10\nalign = 12\n");
    assert!(e.starts_with("x.toml:4: key `raw.align`"), "{e}");
    assert!(e.contains("power of two"), "{e}");

    let e = err("types = [\"raw\"]\n[image]\nwidth = 10\n");
    assert!(e.starts_with("x.toml:3: key `image.width`"), "{e}");

    let e = err("types = [\"raw\"]\nbogus = 1\n");
    assert!(e.starts_with("x.toml:2: key `bogus`: unknown key"), "{e}");

    let e = err("types = [\"raw\"]\n\"out.size\" = 1\n");
    assert!(e.contains("output key"), "{e}");

    let e = err("types = [\"raw\"]\n[raw]\nsize = -1\n");
    assert!(e.contains("out of range"), "{e}");

    let e = err("types = [\"image\"]\n[image]\nwidth = \"wide\"\n");
    assert!(e.contains("expected an integer"), "{e}");

    let e = err("types = [\"image\"\n");
    assert!(e.starts_with("x.toml:1"), "{e}");
    assert!(e.contains("TOML syntax"), "{e}");

    let e = err("types = [\"tensor\"]\n[tensor]\nnum_dims = 9\n");
    assert!(e.contains("at most 8"), "{e}");

    let e = err("types = [\"image_pyramid\"]\n[pyramid]\nscale = 1.5\n");
    assert!(e.contains("(0, 1]"), "{e}");

    let e = parse_json(
        "{\"types\": [\"image\"], \"image\": {\"format\": 5}}",
        "y.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("y.json: key `image.format`"), "{e}");
    let e = parse_json("[1]", "y.json").unwrap_err().to_string();
    assert!(e.contains("expected an object"), "{e}");
    let e = parse_json("{", "y.json").unwrap_err().to_string();
    assert!(e.starts_with("y.json:1"), "{e}");
}

#[test]
fn dumps() {
    let l = parse_toml(CAMERA, "camera.toml").unwrap();
    let t = list_to_text(&l);
    assert!(t.contains("image.format = NV12\n"), "{t}");
    assert!(t.contains("accessor_name = \"camera\"\n"), "{t}");
    let r = reconcile([&l]).unwrap();
    let j = reconciled_to_json(&r);
    assert_eq!(j["reconciled"], serde_json::json!(true));
    assert_eq!(j["outputs"]["out.plane_count"], serde_json::json!(2));
    assert_eq!(j["inputs"][0]["image"]["format"], serde_json::json!("NV12"));
    // The exported inputs load back to the same lists.
    let back = parse_json(&j["inputs"][0].to_string(), "in.json").unwrap();
    assert_eq!(back, l);
}

#[test]
fn load_refuses_endless_or_huge_files() {
    // Before: /dev/zero was read until memory ran out (the test would abort or hang).
    let e = unibuf::attr::file::load(std::path::Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/dev/zero") && e.contains("larger than"), "{e}");
}

const GPU: &str = r#"
types = ["image"]
accessor_name = "gpu"
accessor_kind = "gpu"

[image]
format = "NV12"
width = 1920
height = 1080
modifiers = ["NVIDIA_BLOCK_LINEAR_2D(s=1,g=2,k=0x06,h=4)", "nvidia_16bx2_block_two_gob", "0x0300000000000012", 0, "INVALID"]
modifier_usage = "render"
"#;

#[test]
fn modifier_sets_load_from_toml_and_json() {
    use unibuf::attr::ModifierUsage;
    use unibuf::layout::modifier::{nvidia_block_linear_2d as bl, INVALID, LINEAR};
    let l = parse_toml(GPU, "gpu.toml").unwrap();
    let want = vec![
        bl(0, 1, 2, 0x06, 4),
        bl(0, 0, 0, 0, 1),
        bl(0, 0, 0, 0, 2),
        LINEAR,
        INVALID,
    ];
    assert_eq!(
        l.get(Key::ImageModifiers),
        Some(&Value::Modifiers(want.clone().into()))
    );
    assert_eq!(
        l.get(Key::ImageModifierUsage),
        Some(&Value::ModifierUsage(ModifierUsage::Render))
    );
    // JSON: the dump writes names, and they load back to the same list.
    let j = list_to_json(&l);
    let text = j.to_string();
    assert!(
        text.contains("NVIDIA_BLOCK_LINEAR_2D(c=0,s=1,g=2,k=0x06,h=4)") && text.contains("INVALID"),
        "{text}"
    );
    assert_eq!(parse_json(&text, "gpu.json").unwrap(), l);
    // The reconciled dump names the pick.
    let r = reconcile([&l]).unwrap();
    let d = reconciled_to_json(&r).to_string();
    assert!(
        d.contains(r#""out.modifier":"NVIDIA_BLOCK_LINEAR_2D(c=0,s=1,g=2,k=0x06,h=4)""#),
        "{d}"
    );
    // Errors name the key: a repeat, an unknown name.
    let e = parse_toml(&GPU.replace("\"INVALID\"", "0"), "gpu.toml").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("image.modifiers"), "{e}");
    let e = parse_toml(&GPU.replace("INVALID", "Y_TILED_CCS"), "gpu.toml").unwrap_err();
    assert!(e.to_string().contains("unknown modifier"), "{e}");
}
