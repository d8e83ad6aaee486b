//! The mesh: how peers find and introduce each other. `bridge` is a
//! bridge's part (registrations, introductions, federation).

pub mod bridge;
