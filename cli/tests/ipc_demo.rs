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

#[test]
fn demo_producer_refuses_a_stranger_and_keeps_listening() {
    // Anyone can connect to an abstract socket. A peer of another uid that connects before the
    // real consumer used to make `unibuf-demo producer` exit; it must be refused, logged, and
    // the producer must go on to serve the consumer of its own uid.
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: running a peer under another uid needs root");
        return;
    }
    let sock = format!("@unibuf-demo-stranger-{}", std::process::id());
    let mut producer = Command::new(DEMO)
        .args([
            "producer",
            "--socket",
            &sock,
            "--buffers",
            "1",
            "--frames",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    let mut out = BufReader::new(producer.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    let consumer_args = [
        "consumer",
        "--socket",
        &sock,
        "--buffers",
        "1",
        "--frames",
        "2",
    ];
    // The stranger: a consumer running as nobody (65534).
    let stranger = Command::new(DEMO)
        .args(consumer_args)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run the stranger");
    assert!(!stranger.status.success(), "the stranger was served");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        producer.try_wait().unwrap().is_none(),
        "the producer exited after refusing the stranger"
    );
    let consumer = Command::new(DEMO)
        .args(consumer_args)
        .output()
        .expect("run the consumer");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let p = producer.wait_with_output().expect("producer");
    let perr = String::from_utf8_lossy(&p.stderr);
    assert!(p.status.success(), "{line}{rest}{perr}");
    assert!(
        consumer.status.success(),
        "{}",
        String::from_utf8_lossy(&consumer.stderr)
    );
    assert!(
        perr.contains("refused a connection") && perr.contains("uid 65534"),
        "{perr}"
    );
    assert!(rest.contains("unibuf-demo: ok"), "{rest}");
}

#[test]
fn demo_producer_allocates_nothing_for_a_greedy_consumer() {
    // A consumer whose list asks image.min_size = 2^40 made the producer create and export a
    // 1 TiB memfd. The producer's endpoint now refuses lists above its allocation limit, tells
    // the consumer, and allocates nothing.
    use unibuf::attr::{AccessorKind, AttrList, Permission};
    use unibuf::ipc::Endpoint;
    use unibuf::layout::PixelFormat;
    let name = format!("unibuf-demo-greedy-{}", std::process::id());
    let producer = Command::new(DEMO)
        .args([
            "producer",
            "--socket",
            &format!("@{name}"),
            "--buffers",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    let mut ep = (0..200)
        .find_map(|_| {
            Endpoint::connect_abstract(&name).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(25));
                None
            })
        })
        .expect("connect to the producer");
    ep.set_recv_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut l = AttrList::image(PixelFormat::Nv12, 640, 480).unwrap();
    l.set_accessor_name("greedy")
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_need_cpu_access(true)
        .unwrap()
        .set_required_perm(Permission::ReadOnly)
        .unwrap()
        .set_min_size(1 << 40)
        .unwrap();
    ep.export_lists([&l]).unwrap();
    let told = ep.recv_data().unwrap_err().to_string();
    assert!(told.contains("limit"), "{told}");
    let p = producer.wait_with_output().expect("producer");
    let out = String::from_utf8_lossy(&p.stdout);
    let err = String::from_utf8_lossy(&p.stderr);
    assert!(!p.status.success(), "{out}");
    assert!(err.contains("limit"), "{err}");
    assert!(!out.contains("buffer 0:"), "a buffer was allocated: {out}");
}
