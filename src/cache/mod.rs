//! The response cache (issue 16), Pingora-free like every deciding layer.
//!
//! - `key`: the exact cache's key: the canonical request hashed with its tenant, so that no
//!   answer is served across tenants or across any parameter that changes it.
//! - `store`: the in-process store (bounded by bytes, fresh / stale / gone per entry, purges by
//!   key, tenant, model or all).
//!
//! Status: the key and the store are built and tested here; the lookup stage, the write
//! observer and the replay are not wired into the request path yet, so routes' `cache:`
//! settings still have no effect (the config warns).

pub mod key;
pub mod store;
