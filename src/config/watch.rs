//! When the config watcher loads a changed file: only once its content has stopped changing.
//!
//! The watcher polls the file's content every `server.reload_poll`. A new content is not loaded
//! when first seen but once the file has kept it for `server.reload_settle`, so a file that an
//! editor or a tool is still writing (in place, in several writes) is never loaded half-way.
//! What is loaded is the very content whose hash settled (`observe` hands those bytes back), not
//! a second read of the file, which could already hold something else.
//! Pure state: the caller passes the file's content and the clock in.

use std::time::{Duration, Instant};

use super::content_hash;

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

    /// Called after each poll with the file's content (`None`: it could not be read, e.g.
    /// between a delete and a create). Returns that content when it differs from the one last
    /// handled and has stayed the same for at least `settle`: load exactly these bytes now (they
    /// then count as handled, whatever the reload makes of them, so a rejected file is not
    /// retried every poll).
    pub fn observe(&mut self, content: Option<Vec<u8>>, now: Instant, settle: Duration) -> Option<Vec<u8>> {
        let content = content?;
        let hash = content_hash(&content);
        if Some(hash) == self.handled {
            self.pending = None;
            return None;
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
            Some(content)
        } else {
            None
        }
    }

    /// The file was loaded outside the watch (a signal): the content it read counts as handled.
    pub fn handled(&mut self, content: Option<&[u8]>) {
        self.handled = content.map(content_hash);
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u8) -> Option<Vec<u8>> {
        Some(vec![n])
    }

    /// The content a fresh `Settle` counts as handled.
    fn handled_1() -> Settle {
        Settle::new(content_hash(&[1]))
    }

    const SETTLE: Duration = Duration::from_secs(1);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_change_loads_once_it_has_settled_and_only_once() {
        let t0 = Instant::now();
        let mut s = handled_1();
        assert_eq!(s.observe(c(1), at(t0, 0), SETTLE), None, "unchanged");
        assert_eq!(s.observe(c(2), at(t0, 100), SETTLE), None, "first seen");
        assert_eq!(s.observe(c(2), at(t0, 900), SETTLE), None, "not settled yet");
        assert_eq!(s.observe(c(2), at(t0, 1100), SETTLE), c(2), "settled");
        assert_eq!(s.observe(c(2), at(t0, 2200), SETTLE), None, "already handled");
    }

    #[test]
    fn a_file_still_changing_is_never_loaded() {
        let t0 = Instant::now();
        let mut s = handled_1();
        // A new content every 600 ms: none ever stays 1 s.
        for (i, h) in (2..10).enumerate() {
            let t = at(t0, 600 * i as u64);
            assert_eq!(s.observe(c(h), t, SETTLE), None);
            assert_eq!(s.observe(c(h), t + Duration::from_millis(500), SETTLE), None);
        }
        assert_eq!(s.observe(c(9), at(t0, 600 * 7 + 1000), SETTLE), c(9));
    }

    #[test]
    fn going_back_to_the_handled_content_cancels_the_change() {
        let t0 = Instant::now();
        let mut s = handled_1();
        assert_eq!(s.observe(c(2), at(t0, 0), SETTLE), None);
        assert_eq!(s.observe(c(1), at(t0, 500), SETTLE), None);
        assert_eq!(
            s.observe(c(2), at(t0, 1200), SETTLE),
            None,
            "seen again: the wait restarts"
        );
        assert_eq!(s.observe(c(2), at(t0, 2200), SETTLE), c(2));
    }

    #[test]
    fn unreadable_polls_do_not_count_and_sighup_marks_handled() {
        let t0 = Instant::now();
        let mut s = handled_1();
        assert_eq!(s.observe(c(2), at(t0, 0), SETTLE), None);
        assert_eq!(s.observe(None, at(t0, 1500), SETTLE), None);
        s.handled(Some(&[2]));
        assert_eq!(s.observe(c(2), at(t0, 3000), SETTLE), None);
    }

    #[test]
    fn zero_settle_loads_when_first_seen() {
        let mut s = handled_1();
        assert_eq!(s.observe(c(2), Instant::now(), Duration::ZERO), c(2));
    }
}
