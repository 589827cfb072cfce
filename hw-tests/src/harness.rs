//! The test runner: each test runs in a forked child so a crash, a hang or a leaked fd in one test
//! cannot take the others down, and reports one machine-readable line.
//!
//! Output protocol (one line per test, on stdout):
//!
//! ```text
//! HWTEST PASS <name> [note]
//! HWTEST FAIL <name> <reason>
//! HWTEST SKIP <name> <reason>
//! HWTEST-SUMMARY <passed> passed, <failed> failed, <skipped> skipped
//! ```

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// What one test found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and every assertion held; the string is an optional note (figures, devices used).
    Pass(String),
    /// It could not run here; the string says why (which device or kernel option is missing).
    Skip(String),
    /// It ran and something did not hold.
    Fail(String),
}

/// A test's body: `Ok(Outcome)`, or `Err` for a failure with its context chain.
pub type TestFn = fn() -> anyhow::Result<Outcome>;

/// One hardware test.
pub struct Test {
    /// Unique name, `area::what` (e.g. `conformance::heap_zeroed_after_free`).
    pub name: &'static str,
    /// What it needs from the machine, shown by `--list`.
    pub needs: &'static str,
    /// The body.
    pub run: TestFn,
}

/// Returns `Ok(Outcome::Pass(..))`.
pub fn pass(note: impl Into<String>) -> anyhow::Result<Outcome> {
    Ok(Outcome::Pass(note.into()))
}

/// Returns `Ok(Outcome::Skip(..))`.
pub fn skip(reason: impl Into<String>) -> anyhow::Result<Outcome> {
    Ok(Outcome::Skip(reason.into()))
}

/// Per-test time limit (SIGALRM in the child).
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " | ")
}

/// Runs `test` in a forked child and returns its outcome.
pub fn run_isolated(test: &Test) -> Outcome {
    let (rd, wr) = match rustix::pipe::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(format!("pipe: {e}")),
    };
    let _ = std::io::stdout().flush();
    // SAFETY: the runner is single-threaded, so the child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Outcome::Fail(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(rd);
        // SAFETY: alarm has no memory-safety preconditions.
        unsafe { libc::alarm(TEST_TIMEOUT.as_secs() as u32) };
        let result = std::panic::catch_unwind(test.run);
        let line = match result {
            Ok(Ok(Outcome::Pass(n))) => format!("PASS {}", one_line(&n)),
            Ok(Ok(Outcome::Skip(r))) => format!("SKIP {}", one_line(&r)),
            Ok(Ok(Outcome::Fail(r))) => format!("FAIL {}", one_line(&r)),
            Ok(Err(e)) => format!("FAIL {}", one_line(&format!("{e:#}"))),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                format!("FAIL panicked: {}", one_line(&msg))
            }
        };
        let mut f = std::fs::File::from(wr);
        let _ = f.write_all(line.as_bytes());
        let _ = f.flush();
        let _ = std::io::stdout().flush();
        // SAFETY: _exit ends the child without running the parent's atexit handlers twice.
        unsafe { libc::_exit(0) };
    }
    drop(wr);
    let mut out = String::new();
    let _ = std::fs::File::from(rd).read_to_string(&mut out);
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r < 0 {
        return Outcome::Fail(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let why = if sig == libc::SIGALRM {
            format!("timed out after {}s", TEST_TIMEOUT.as_secs())
        } else {
            format!("child killed by signal {sig}")
        };
        return Outcome::Fail(why);
    }
    let (kind, rest) = out.split_once(' ').unwrap_or((out.as_str(), ""));
    match kind {
        "PASS" => Outcome::Pass(rest.to_string()),
        "SKIP" => Outcome::Skip(rest.to_string()),
        "FAIL" => Outcome::Fail(rest.to_string()),
        _ => Outcome::Fail(format!("child exited with status {status} and no result")),
    }
}

/// Runs every test whose name contains one of `filters` (all tests when empty), prints the
/// protocol lines, and returns `(passed, failed, skipped)`.
pub fn run_all(tests: &[Test], filters: &[String]) -> (usize, usize, usize) {
    let (mut p, mut f, mut s) = (0, 0, 0);
    for t in tests
        .iter()
        .filter(|t| filters.is_empty() || filters.iter().any(|f| t.name.contains(f.as_str())))
    {
        let outcome = run_isolated(t);
        let line = match &outcome {
            Outcome::Pass(n) => {
                p += 1;
                format!("HWTEST PASS {} {}", t.name, n)
            }
            Outcome::Fail(r) => {
                f += 1;
                format!("HWTEST FAIL {} {}", t.name, r)
            }
            Outcome::Skip(r) => {
                s += 1;
                format!("HWTEST SKIP {} {}", t.name, r)
            }
        };
        println!("{}", line.trim_end());
        let _ = std::io::stdout().flush();
    }
    println!("HWTEST-SUMMARY {p} passed, {f} failed, {s} skipped");
    (p, f, s)
}

/// Takes ownership of a raw fd returned by a raw ioctl.
///
/// # Safety
///
/// `fd` must be a valid, open fd that nothing else owns.
pub unsafe fn own_fd(fd: i32) -> OwnedFd {
    // SAFETY: forwarded from this function's contract.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Raw fd number, for messages.
pub fn raw<F: AsRawFd>(f: &F) -> i32 {
    f.as_raw_fd()
}
