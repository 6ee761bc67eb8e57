//! Receiving from the background writers' queues without making senders pay a syscall.
//!
//! A thread blocked in a channel's `recv` must be woken by the next `send`: with `std::sync::mpsc`
//! that is a futex syscall, paid by the sender, on the request path (measured: ~10% of a proxy
//! thread's time at load with the ledger and the access log both waiting, and the context switches
//! that follow on a 2-core machine). A writer that sleeps and then looks never blocks in the
//! channel, so a send is a few memory writes. The price is that a record waits up to `POLL` before
//! its writer sees it, and an idle writer wakes `1 / POLL` times a second.

use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// How long a writer sleeps between looks at an empty queue.
pub const POLL: Duration = Duration::from_millis(2);

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
