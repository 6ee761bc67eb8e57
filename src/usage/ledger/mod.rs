//! The spend ledger (being built).
