//! The pricing table and cost (being built).
