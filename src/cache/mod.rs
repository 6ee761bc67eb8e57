//! The response cache (issue 16), Pingora-free like every deciding layer.
//!
//! - `assemble`: a streamed answer's chunks put back together (what a streamed miss stores).
//! - `flight`: coalescing of identical misses (one call, the others wait a bounded time) and
//!   the one-refresh-per-key rule of stale-while-revalidate.
//! - `key`: the exact cache's key: the canonical request hashed with its tenant, so that no
//!   answer is served across tenants or across any parameter that changes it.
//! - `replay`: a stored (canonical) answer written in the client's format, whole or as a
//!   stream, by the encoders live answers use.
//! - `store`: the in-process store (bounded by bytes, fresh / stale / gone per entry, purges by
//!   key, tenant, model or all).
//!
//! Status: the key, the store, the replay, the assembly and the coalescing are built and tested here; the lookup stage and
//! the write observer are not wired into the request path yet, so routes' `cache:` settings
//! still have no effect (the config warns).

pub mod assemble;
pub mod flight;
pub mod key;
pub mod replay;
pub mod store;
