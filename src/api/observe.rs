//! The observers of an answer on its way to the client: the relay's chain.
//!
//! The relay first turns the provider's bytes into the client's (translating, and counting the
//! usage as it goes: only the translator sees the provider's usage fields), then hands every
//! piece of the client's body, in order, through the chain: each observer sees what the ones
//! before it let out, may rewrite it (today: leave out the usage chunk the client did not ask
//! for; next: restore redacted PII) or keep a copy (next: the cache's write on a clean end), and
//! hears once how the answer ended. A new concern is one more observer pushed where the relay
//! builds its chain (`proxy::answer::observers`), not an edit of the relay's loop.
//!
//! Invariants: pieces arrive in order and the end comes once, after the last piece; what an
//! observer returns is all that goes on (an empty `Bytes` holds a piece back); the chain does
//! not allocate while it is empty.

use bytes::{Bytes, BytesMut};

/// One link of the chain.
pub trait ResponseObserver: Send {
    /// A piece of the client's body (a whole answer comes in one piece): what goes on in its
    /// place.
    fn body(&mut self, bytes: Bytes) -> Bytes;

    /// The answer ended: `complete` when it ended cleanly (a stream's final event was seen, a
    /// whole answer was a success). Returns what the observer still held back, which goes out
    /// last; on an incomplete end the relay ends the stream with an error event instead and
    /// drops it.
    fn end(&mut self, complete: bool) -> Bytes;

    /// The observer refuses the answer (an output guardrail's `block`): a whole answer becomes
    /// this error instead; a stream ends with it as its error event after what was let out.
    fn refusal(&self) -> Option<super::ApiError> {
        None
    }
}

/// The chain, in the order the observers were pushed.
#[derive(Default)]
pub struct Observers(Vec<Box<dyn ResponseObserver>>);

impl Observers {
    pub fn push(&mut self, observer: Box<dyn ResponseObserver>) {
        self.0.push(observer);
    }

    /// A piece of the client's body through every observer.
    pub fn body(&mut self, bytes: Bytes) -> Bytes {
        self.0
            .iter_mut()
            .fold(bytes, |b, o| if b.is_empty() { b } else { o.body(b) })
    }

    /// The first observer's refusal of the answer, if any.
    pub fn refusal(&self) -> Option<super::ApiError> {
        self.0.iter().find_map(|o| o.refusal())
    }

    /// Ends every observer; what one held back goes through the ones after it before they end.
    /// An answer an observer refused did not end cleanly: the ones after it hear `false`.
    pub fn end(&mut self, complete: bool) -> Bytes {
        let mut pending = Bytes::new();
        let mut refused = false;
        for o in &mut self.0 {
            let passed = if pending.is_empty() { pending } else { o.body(pending) };
            let tail = o.end(complete && !refused);
            refused = refused || o.refusal().is_some();
            pending = join(passed, tail);
        }
        pending
    }
}

/// `a` then `b`, copied only when both hold bytes.
pub fn join(a: Bytes, b: Bytes) -> Bytes {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a,
        (true, false) => b,
        (false, false) => {
            let mut both = BytesMut::with_capacity(a.len() + b.len());
            both.extend_from_slice(&a);
            both.extend_from_slice(&b);
            both.freeze()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Upper-cases what it sees and holds back the last byte of each piece until the next.
    #[derive(Default)]
    struct Upper(Option<u8>);

    impl ResponseObserver for Upper {
        fn body(&mut self, bytes: Bytes) -> Bytes {
            let mut all: Vec<u8> = self.0.take().into_iter().chain(bytes.iter().copied()).collect();
            self.0 = all.pop();
            Bytes::from(all.to_ascii_uppercase())
        }
        fn end(&mut self, _: bool) -> Bytes {
            Bytes::from(self.0.take().map(|b| vec![b.to_ascii_uppercase()]).unwrap_or_default())
        }
    }

    /// Records what it saw, and how it ended, and adds a trailer on a clean end.
    struct Tape(std::sync::Arc<std::sync::Mutex<(Vec<u8>, Option<bool>)>>);

    impl ResponseObserver for Tape {
        fn body(&mut self, bytes: Bytes) -> Bytes {
            self.0.lock().unwrap().0.extend_from_slice(&bytes);
            bytes
        }
        fn end(&mut self, complete: bool) -> Bytes {
            self.0.lock().unwrap().1 = Some(complete);
            if complete {
                Bytes::from_static(b"!")
            } else {
                Bytes::new()
            }
        }
    }

    #[test]
    fn pieces_flow_in_order_and_held_back_bytes_reach_the_later_observers_before_they_end() {
        let tape = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), None)));
        let mut chain = Observers::default();
        chain.push(Box::new(Upper::default()));
        chain.push(Box::new(Tape(std::sync::Arc::clone(&tape))));
        let mut out = Vec::new();
        for piece in ["he", "llo", " wor", "ld"] {
            out.extend_from_slice(&chain.body(Bytes::from(piece)));
        }
        out.extend_from_slice(&chain.end(true));
        assert_eq!(out, b"HELLO WORLD!");
        assert_eq!(tape.lock().unwrap().0, b"HELLO WORLD");
        assert_eq!(tape.lock().unwrap().1, Some(true));
    }

    #[test]
    fn an_empty_chain_passes_everything_through() {
        let mut chain = Observers::default();
        assert_eq!(chain.body(Bytes::from_static(b"x")), Bytes::from_static(b"x"));
        assert!(chain.end(false).is_empty());
    }
}
