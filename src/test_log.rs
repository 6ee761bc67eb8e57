//! Log lines of the unit tests, for tests that assert what is logged (a state change logged
//! once, not per retry). The events of background threads count too, so the subscriber is the
//! process-wide one, installed by the first `capture`; each test picks its own lines out by a
//! name only it uses (its temporary directory).

use std::io::Write;
use std::sync::{Mutex, Once};

static LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LINES.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing (once per process); later events can be read with `lines_with`.
pub fn capture() {
    static START: Once = Once::new();
    START.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(|| Sink)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// The captured lines that contain `needle` (each one event: the level, message and fields).
pub fn lines_with(needle: &str) -> Vec<String> {
    let all = LINES.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&all)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}
