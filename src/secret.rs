//! `Secret`: a resolved credential (provider keys, AWS credentials, the admin token, ledger and
//! Redis URLs). A leaf module, below every layer: config resolves secrets, providers sign with
//! them, and neither needs the other for it.
//!
//! Invariant: a secret's value never reaches a log line or an error message. `Debug` and `Display`
//! print `***`; the only way to the bytes is `expose()`, used where the value goes on the wire.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place it is needed: an upstream request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("sk-live-123");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "sk-live-123");
    }
}
