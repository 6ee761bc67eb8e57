//! Receiving from the background writers' queues without making senders pay a syscall.
//!
//! A thread blocked in a channel's `recv` must be woken by the next `send`: with `std::sync::mpsc`
//! that is a futex syscall, paid by the sender, on the request path (measured: ~10% of a proxy
//! thread's time at load with the ledger and the access log both waiting, and the context switches
//! that follow on a 2-core machine). A writer that sleeps and then looks never blocks in the
//! channel, so a send is a few memory writes. The price is that a record waits up to `POLL` before
//! its writer sees it, and an idle writer wakes `1 / POLL` times a second. At 10 ms (it was 2 ms)
//! the writers wake 100 times a second, and each wake-up takes a larger burst: at 2,000 requests a
//! second, 20 records a burst instead of 4, so the access log makes a fifth of the `write`s.
//!
//! `background` lowers the calling thread's CPU priority: the writers run on the same cores as the
//! proxy threads, and a burst of theirs must not delay a request (see `background`).

use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// How long a writer sleeps between looks at an empty queue.
pub const POLL: Duration = Duration::from_millis(10);

/// Lowers the calling thread's scheduling priority to nice 10 (Linux sets it per thread), for the
/// background writers (access log, spend ledger, response store, trace export): when a proxy
/// thread becomes runnable it preempts them, so a burst of theirs (an SQLite commit, a large
/// write) does not sit in front of a request; under the scheduler's weights they still get about
/// a tenth of a busy core, several times what they need, so they keep up at any load the proxy
/// threads can serve. Best effort: a failure is logged and ignored.
pub fn background() {
    // SAFETY: gettid has no preconditions; setpriority with PRIO_PROCESS and a thread id changes
    // only that thread's nice value.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower a writer thread's priority");
    }
}

/// `rx.recv_timeout(wait)`, without blocking in the channel (see the module doc).
pub fn recv_timeout<T>(rx: &Receiver<T>, wait: Duration) -> Result<T, RecvTimeoutError> {
    let deadline = Instant::now().checked_add(wait);
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => POLL,
        };
        if left.is_zero() {
            return Err(RecvTimeoutError::Timeout);
        }
        std::thread::sleep(left.min(POLL));
    }
}

/// `rx.recv()`, without blocking in the channel.
pub fn recv<T>(rx: &Receiver<T>) -> Option<T> {
    loop {
        match recv_timeout(rx, Duration::from_secs(3600)) {
            Ok(v) => return Some(v),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_lowers_only_the_calling_threads_priority() {
        // SAFETY: getpriority/gettid only read the scheduling state of this process's threads.
        let nice_of = |tid: libc::pid_t| unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
        // SAFETY: as above.
        let here = unsafe { libc::gettid() };
        let mine = nice_of(here);
        let theirs = std::thread::spawn(move || {
            background();
            // SAFETY: as above.
            nice_of(unsafe { libc::gettid() })
        })
        .join()
        .unwrap();
        assert_eq!(theirs, mine.max(10));
        assert_eq!(nice_of(here), mine, "the caller's own priority is unchanged");
    }

    #[test]
    fn values_arrive_in_order_then_the_end_is_seen() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let sender = std::thread::spawn(move || {
            for i in 0..100 {
                tx.send(i).unwrap();
            }
        });
        let got: Vec<i32> = std::iter::from_fn(|| recv(&rx)).collect();
        sender.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_queue_times_out_and_a_closed_one_says_so() {
        let (tx, rx) = std::sync::mpsc::sync_channel::<u8>(1);
        assert_eq!(
            recv_timeout(&rx, Duration::from_millis(5)),
            Err(RecvTimeoutError::Timeout)
        );
        drop(tx);
        assert_eq!(
            recv_timeout(&rx, Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
