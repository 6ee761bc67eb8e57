//! The response cache (issue 16), Pingora-free like every deciding layer.
//!
//! - `key`: the exact cache's key: the canonical request hashed with its tenant, so that no
//!   answer is served across tenants or across any parameter that changes it.
//!
//! Status: the key is built and tested here; the lookup stage, the stores and the replay are
//! not wired into the request path yet, so routes' `cache:` settings still have no effect.

pub mod key;
