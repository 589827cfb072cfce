//! `poll(2)` on one fd, with a timeout: the one poll loop of the crate (sync_files, dma-buf
//! implicit fences, DRM out-fences, V4L2 dequeues, the hotplug monitor).

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fd::BorrowedFd;
use rustix::io::{Errno, Result};
use std::time::{Duration, Instant};

/// Polls `fd` for `events` for at most `timeout` (`None`: no limit) and answers the events that
/// came (`revents`; empty when the time ran out). `EINTR` polls again with the time left, so a
/// signal cannot stretch the wait; the clock is read only for a non-zero timeout, and only once
/// unless a signal interrupts.
pub fn poll_one(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> Result<PollFlags> {
    let deadline = timeout.filter(|t| !t.is_zero()).map(|t| Instant::now() + t);
    let mut left = timeout;
    loop {
        let ts = left.map(|l| Timespec {
            tv_sec: l.as_secs().min(i64::MAX as u64) as _,
            tv_nsec: l.subsec_nanos() as _,
        });
        let mut fds = [PollFd::from_borrowed_fd(fd, events)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => return Ok(PollFlags::empty()),
            Ok(_) => return Ok(fds[0].revents()),
            Err(Errno::INTR) => {
                if let Some(d) = deadline {
                    left = Some(d.saturating_duration_since(Instant::now()));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn times_out_empty_then_answers_pollin() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let t0 = Instant::now();
        let got = poll_one(r.as_fd(), PollFlags::IN, Some(Duration::from_millis(20))).unwrap();
        assert!(got.is_empty(), "{got:?}");
        assert!(t0.elapsed() >= Duration::from_millis(19));
        assert!(poll_one(r.as_fd(), PollFlags::IN, Some(Duration::ZERO))
            .unwrap()
            .is_empty());
        rustix::io::write(&w, b"x").unwrap();
        let got = poll_one(r.as_fd(), PollFlags::IN, None).unwrap();
        assert!(got.contains(PollFlags::IN), "{got:?}");
    }

    #[test]
    fn a_closed_writer_is_pollhup() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        drop(w);
        let got = poll_one(r.as_fd(), PollFlags::IN, Some(Duration::from_secs(1))).unwrap();
        assert!(got.contains(PollFlags::HUP), "{got:?}");
    }
}
