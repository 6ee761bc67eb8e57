//! When the config watcher loads a changed file: only once its content has stopped changing.
//!
//! The watcher polls the file's content hash every `server.reload_poll`. A new content is not
//! loaded when first seen but once the file has kept it for `server.reload_settle`, so a file that
//! an editor or a tool is still writing (in place, in several writes) is never loaded half-way.
//! Pure state: the caller passes the clock in.

use std::time::{Duration, Instant};

/// The watcher's view of the file: the content last handled, and a change waiting to settle.
#[derive(Debug)]
pub struct Settle {
    handled: Option<u64>,
    pending: Option<(u64, Instant)>,
}

impl Settle {
    /// `handled`: the hash of the content the running config was built from.
    pub fn new(handled: u64) -> Self {
        Settle {
            handled: Some(handled),
            pending: None,
        }
    }

    /// Called after each poll with the file's content hash (`None`: it could not be read, e.g.
    /// between a delete and a create). True when the content differs from the one last handled
    /// and has stayed the same for at least `settle`: load it now (it then counts as handled,
    /// whatever the reload makes of it, so a rejected file is not retried every poll).
    pub fn observe(&mut self, hash: Option<u64>, now: Instant, settle: Duration) -> bool {
        let Some(hash) = hash else {
            return false;
        };
        if Some(hash) == self.handled {
            self.pending = None;
            return false;
        }
        let since = match self.pending {
            Some((h, since)) if h == hash => since,
            _ => {
                self.pending = Some((hash, now));
                now
            }
        };
        if now.saturating_duration_since(since) >= settle {
            self.handled = Some(hash);
            self.pending = None;
            true
        } else {
            false
        }
    }

    /// The file was loaded outside the watch (SIGHUP): its current content counts as handled.
    pub fn handled(&mut self, hash: Option<u64>) {
        self.handled = hash;
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_secs(1);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_change_loads_once_it_has_settled_and_only_once() {
        let t0 = Instant::now();
        let mut s = Settle::new(1);
        assert!(!s.observe(Some(1), at(t0, 0), SETTLE), "unchanged");
        assert!(!s.observe(Some(2), at(t0, 100), SETTLE), "first seen");
        assert!(!s.observe(Some(2), at(t0, 900), SETTLE), "not settled yet");
        assert!(s.observe(Some(2), at(t0, 1100), SETTLE), "settled");
        assert!(!s.observe(Some(2), at(t0, 2200), SETTLE), "already handled");
    }

    #[test]
    fn a_file_still_changing_is_never_loaded() {
        let t0 = Instant::now();
        let mut s = Settle::new(1);
        // A new content every 600 ms: none ever stays 1 s.
        for (i, h) in (2..10).enumerate() {
            let t = at(t0, 600 * i as u64);
            assert!(!s.observe(Some(h), t, SETTLE));
            assert!(!s.observe(Some(h), t + Duration::from_millis(500), SETTLE));
        }
        assert!(s.observe(Some(9), at(t0, 600 * 7 + 1000), SETTLE));
    }

    #[test]
    fn going_back_to_the_handled_content_cancels_the_change() {
        let t0 = Instant::now();
        let mut s = Settle::new(1);
        assert!(!s.observe(Some(2), at(t0, 0), SETTLE));
        assert!(!s.observe(Some(1), at(t0, 500), SETTLE));
        assert!(
            !s.observe(Some(2), at(t0, 1200), SETTLE),
            "seen again: the wait restarts"
        );
        assert!(s.observe(Some(2), at(t0, 2200), SETTLE));
    }

    #[test]
    fn unreadable_polls_do_not_count_and_sighup_marks_handled() {
        let t0 = Instant::now();
        let mut s = Settle::new(1);
        assert!(!s.observe(Some(2), at(t0, 0), SETTLE));
        assert!(!s.observe(None, at(t0, 1500), SETTLE));
        s.handled(Some(2));
        assert!(!s.observe(Some(2), at(t0, 3000), SETTLE));
    }

    #[test]
    fn zero_settle_loads_when_first_seen() {
        let mut s = Settle::new(1);
        assert!(s.observe(Some(2), Instant::now(), Duration::ZERO));
    }
}
