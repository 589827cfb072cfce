//! The two-process demo, as the README runs it: one command, and the two roles run separately.

use std::process::{Command, Stdio};

const DEMO: &str = env!("CARGO_BIN_EXE_unibuf-demo");

#[test]
fn demo_runs_both_processes() {
    let out = Command::new(DEMO)
        .args([
            "--frames",
            "5",
            "--buffers",
            "2",
            "--width",
            "320",
            "--height",
            "240",
        ])
        .output()
        .expect("run unibuf-demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("every byte as expected").count(), 5, "{text}");
    assert_eq!(text.matches("map_write refused").count(), 2, "{text}");
    assert!(text.contains("reconciled 2 list(s)"), "{text}");
    assert!(text.contains("backend: "), "{text}");
    assert!(text.contains("unibuf-demo: ok"), "{text}");
}

#[test]
fn demo_roles_in_separate_processes_over_a_path() {
    let sock = std::env::temp_dir().join(format!("unibuf-demo-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let sock = sock.to_str().unwrap().to_string();
    let producer = Command::new(DEMO)
        .args([
            "producer",
            "--socket",
            &sock,
            "--frames",
            "3",
            "--buffers",
            "1",
        ])
        .args(["--width", "64", "--height", "64"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    let consumer = Command::new(DEMO)
        .args([
            "consumer",
            "--socket",
            &sock,
            "--frames",
            "3",
            "--buffers",
            "1",
        ])
        .args(["--width", "64", "--height", "64"])
        .output()
        .expect("run consumer");
    let p = producer.wait_with_output().expect("producer");
    let ptext = String::from_utf8_lossy(&p.stdout);
    let ctext = String::from_utf8_lossy(&consumer.stdout);
    assert!(p.status.success(), "{ptext}");
    assert!(consumer.status.success(), "{ctext}");
    assert!(ctext.contains("ok: 3 frames checked"), "{ctext}");
}

#[test]
fn demo_consumer_with_conflicting_needs_is_told_why() {
    // The consumer asks for 64x64, the producer for 32x32: reconciliation fails, and the
    // consumer hears the conflict over the socket instead of hanging.
    let sock = std::env::temp_dir().join(format!("unibuf-demo-conf-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let sock = sock.to_str().unwrap().to_string();
    let producer = Command::new(DEMO)
        .args([
            "producer", "--socket", &sock, "--width", "32", "--height", "32",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    let consumer = Command::new(DEMO)
        .args([
            "consumer", "--socket", &sock, "--width", "64", "--height", "64",
        ])
        .output()
        .expect("run consumer");
    let p = producer.wait_with_output().expect("producer");
    assert!(!p.status.success());
    assert!(!consumer.status.success());
    let cerr = String::from_utf8_lossy(&consumer.stderr);
    assert!(
        cerr.contains("conflict") && cerr.contains("image.width"),
        "{cerr}"
    );
}

#[test]
fn demo_refuses_a_buffer_count_the_consumer_cannot_take() {
    // Before: --buffers 0 made the producer panic (frame % 0) and --buffers 65 ran into the
    // consumer's refusal only after allocating; both are now usage errors (exit 2), no panic.
    for n in ["0", "65"] {
        let out = Command::new(DEMO)
            .args(["--buffers", n, "--frames", "1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--buffers {n}: {err}");
        assert!(err.contains("--buffers"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
