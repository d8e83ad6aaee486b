//! `peersm-node relay`: an onion router on a TLS ORPort: our certificates,
//! inbound channels running relay circuits, outbound channels for EXTEND2,
//! exit streams under an exit policy.

pub mod descriptor;
mod dir_service;
mod exit;
pub mod exit_policy;
pub mod inbound;
pub mod keys;
pub mod outbound;
pub mod server;
