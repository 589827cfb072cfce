//! Hardware tests: the C API's examples (capi/examples), built statically against libunibuf.a by
//! `scripts/capi-test --static` and put into the initramfs by scripts/hw-test, run on the
//! system heap (`--device`: device accessors, so the buffer must be a dma-buf).

use super::env::{heap_names, missing, Feature};
use crate::harness::{pass, skip, Outcome, Test};
use anyhow::{ensure, Context};
use std::path::Path;
use std::process::Command;

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
    ]
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
