//! The response cache (issue 16), Pingora-free like every deciding layer.
//!
//! - `assemble`: a streamed answer's chunks put back together (what a streamed miss stores).
//! - `capture`: the write observer: a copy of the client's answer read back into the canonical
//!   answer after a clean end (before the restoration of redacted values).
//! - `flight`: coalescing of identical misses (one call, the others wait a bounded time) and
//!   the one-refresh-per-key rule of stale-while-revalidate.
//! - `key`: the exact cache's key: the canonical request hashed with its tenant, so that no
//!   answer is served across tenants or across any parameter that changes it.
//! - `replay`: a stored (canonical) answer written in the client's format, whole or as a
//!   stream, by the encoders live answers use.
//! - `store`: the in-process store (bounded by bytes, fresh / stale / gone per entry, purges by
//!   key, tenant, model or all).
//!
//! Status: these parts are built and tested; the lookup stage is not wired into the request
//! path yet (nor the write observer into the relay), so routes' `cache:` settings still have no
//! effect (the config warns).

pub mod assemble;
pub mod capture;
pub mod flight;
pub mod key;
pub mod replay;
#[cfg(test)]
mod sample;
pub mod store;
