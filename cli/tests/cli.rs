//! Runs the built `unibuf` binary on the shipped examples.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root: the examples live there, one level above this package.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn unibuf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unibuf"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run unibuf")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn camera_display_nv12_reconciles() {
    let o = unibuf(&[
        "reconcile",
        "examples/camera-display-nv12/camera.toml",
        "examples/camera-display-nv12/display.toml",
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    // 1920 rounded up to the display's 256-byte pitch alignment = 2048.
    assert!(
        out.contains("plane 0: offset 0 pitch 2048 aligned height 1080"),
        "{out}"
    );
    assert!(
        out.contains("plane 1: offset 2211840 pitch 2048 aligned height 540"),
        "{out}"
    );
    assert!(out.contains("size: 3317760 bytes, alignment 4096"), "{out}");
    assert!(out.contains("permission: read-write"), "{out}");
    assert!(out.contains("DRM ADDFB2: fourcc 'NV12'"), "{out}");
    assert!(out.contains("name \"camera+display\""), "{out}");
}

#[test]
fn cpu_gpu_tensor_reconciles() {
    let o = unibuf(&[
        "reconcile",
        "--json",
        "examples/cpu-gpu-tensor/cpu.toml",
        "examples/cpu-gpu-tensor/gpu.toml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // float32 [1, 3, 224, 224], rows of 224 * 4 = 896 bytes aligned to 256 -> 1024.
    assert_eq!(
        j["outputs"]["out.tensor_strides"],
        serde_json::json!([688128, 229376, 1024, 4])
    );
    assert_eq!(j["outputs"]["out.align"], serde_json::json!(4096));
    assert_eq!(j["outputs"]["out.cpu_access"], serde_json::json!(true));
}

#[test]
fn conflict_exits_1_naming_key_and_both_accessors() {
    let o = unibuf(&[
        "reconcile",
        "examples/conflict/a.toml",
        "examples/conflict/b.toml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(out.contains("image.format"), "{out}");
    assert!(out.contains("camera = YUYV"), "{out}");
    assert!(out.contains("display = XRGB8888"), "{out}");
}

#[test]
fn unusable_input_exits_2_naming_file_and_line() {
    let dir = std::env::temp_dir().join(format!("unibuf-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "types = [\"image\"]\n\n[image]\nformat = \"NV13\"\nwidth = 4\n",
    )
    .unwrap();
    let o = unibuf(&[
        "reconcile",
        "examples/conflict/a.toml",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("{}:4: key `image.format`", bad.display())),
        "{err}"
    );

    let o = unibuf(&["reconcile", "does/not/exist.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("does/not/exist.toml"));

    let o = unibuf(&["reconcile"]);
    assert_eq!(o.status.code(), Some(2), "no files is a usage error");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dump_and_formats() {
    let o = unibuf(&["dump", "examples/camera-display-nv12/camera.toml"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("image.format = NV12"));
    let o = unibuf(&["dump", "--json", "examples/conflict/b.toml"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["image"]["format"], serde_json::json!("XRGB8888"));
    let o = unibuf(&["formats"]);
    let out = text(&o.stdout);
    assert!(out.contains("SRGGB16"), "{out}");
    assert!(out.lines().count() > 37);
}

#[test]
fn json_lists_reconcile_like_toml() {
    let dir = std::env::temp_dir().join(format!("unibuf-cli-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for name in ["camera", "display"] {
        let o = unibuf(&[
            "dump",
            "--json",
            &format!("examples/camera-display-nv12/{name}.toml"),
        ]);
        assert_eq!(o.status.code(), Some(0));
        let f = dir.join(format!("{name}.json"));
        std::fs::write(&f, &o.stdout).unwrap();
        files.push(f.to_str().unwrap().to_string());
    }
    let o = unibuf(&["reconcile", &files[0], &files[1]]);
    let json_out = text(&o.stdout);
    let o2 = unibuf(&[
        "reconcile",
        "examples/camera-display-nv12/camera.toml",
        "examples/camera-display-nv12/display.toml",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json_out, text(&o2.stdout));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_example_file_loads() {
    for dir in ["camera-display-nv12", "cpu-gpu-tensor", "conflict"] {
        for e in std::fs::read_dir(root().join("examples").join(dir)).unwrap() {
            let p = e.unwrap().path();
            let o = unibuf(&["dump", p.to_str().unwrap()]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}: {}",
                p.display(),
                text(&o.stderr)
            );
        }
    }
}

#[test]
fn conflict_prints_as_json_with_json() {
    let o = unibuf(&[
        "reconcile",
        "--json",
        "examples/conflict/a.toml",
        "examples/conflict/b.toml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o.stdout)));
    assert_eq!(j["reconciled"], serde_json::json!(false));
    assert_eq!(j["heading"], serde_json::json!("cannot reconcile"));
    let item = j["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == "image.format")
        .expect("image.format conflict");
    assert_eq!(item["kind"], serde_json::json!("disagree"));
    assert_eq!(
        item["values"],
        serde_json::json!([
            {"accessor": "camera", "value": "YUYV"},
            {"accessor": "display", "value": "XRGB8888"},
        ])
    );
}

#[test]
fn an_empty_list_file_is_unusable_input() {
    let dir = std::env::temp_dir().join(format!("unibuf-cli-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in [
        ("empty.toml", ""),
        ("comments.toml", "# nothing here\n"),
        ("empty.json", "{}"),
    ] {
        let f = dir.join(name);
        std::fs::write(&f, body).unwrap();
        let o = unibuf(&["reconcile", "examples/conflict/a.toml", f.to_str().unwrap()]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {}{err}", text(&o.stdout));
        assert!(
            err.contains(f.to_str().unwrap()) && err.contains("empty"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_validation_failure_is_headed_as_one() {
    let dir = std::env::temp_dir().join(format!("unibuf-cli-valid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("no-size.toml");
    std::fs::write(&f, "types = [\"image\"]\n\n[image]\nformat = \"NV12\"\n").unwrap();
    let o = unibuf(&["reconcile", f.to_str().unwrap()]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.starts_with("validation failed (2 keys):"), "{out}");
    assert!(
        out.contains("image.width: required but set by no list"),
        "{out}"
    );
    assert!(!out.contains("cannot reconcile"), "{out}");
    let o = unibuf(&["reconcile", "--json", f.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["heading"], serde_json::json!("validation failed"));
    assert_eq!(j["conflicts"][0]["kind"], serde_json::json!("missing"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `unibuf plan`: the dry run reports the backend, its reason and whether this machine can
/// allocate now, and allocates nothing. A CPU-only tensor always fits somewhere (a heap or a
/// memfd); a camera+display pair needs a dma-buf provider, which this host may lack (exit 3).
#[test]
fn plan_dry_run() {
    let o = unibuf(&["plan", "examples/cpu-gpu-tensor/cpu.toml"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("backend: "), "{out}");
    assert!(out.contains("can allocate now: yes"), "{out}");
    assert!(out.contains("tensor"), "layout printed: {out}");
    let o = unibuf(&["plan", "--json", "examples/cpu-gpu-tensor/cpu.toml"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("plan --json");
    assert_eq!(j["can_allocate"], serde_json::json!(true));
    assert!(j["backend"]["kind"].is_string(), "{j}");
    assert!(j["checks"].as_array().is_some_and(|c| !c.is_empty()), "{j}");

    let o = unibuf(&[
        "plan",
        "examples/camera-display-nv12/camera.toml",
        "examples/camera-display-nv12/display.toml",
    ]);
    let out = text(&o.stdout);
    let dma_buf_here = ["/dev/dma_heap", "/dev/udmabuf", "/dev/dri"]
        .iter()
        .any(|p| Path::new(p).exists());
    if dma_buf_here {
        assert!(matches!(o.status.code(), Some(0 | 3)), "{out}");
    } else {
        assert_eq!(o.status.code(), Some(3), "{out}");
        assert!(out.contains("backend: none"), "{out}");
        assert!(out.contains("can allocate now: no"), "{out}");
    }
    // A conflict exits 1, as reconcile does.
    let o = unibuf(&[
        "plan",
        "examples/conflict/a.toml",
        "examples/conflict/b.toml",
    ]);
    assert_eq!(o.status.code(), Some(1));
}
