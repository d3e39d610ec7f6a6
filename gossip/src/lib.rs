//! Gossip for Isthmus: the LAN pool of a datacenter's agents and the WAN pool of every
//! datacenter's servers (`pool`: SWIM over foca, as a sans-IO [`pool::PoolCore`] with a thin
//! tokio driver), the keyring that seals every packet of both (`keyring`, kept in its file
//! by `keyfile`), and Vivaldi network coordinates (`coordinate`).
//!
//! Owns: membership, goodbyes, keyring queries across a pool, coordinate probes, local
//! health. Must not touch: Raft, the catalog, HTTP, the dc-links (the WAN pool's packets
//! leave through a [`pool::RoutedOut`] the agent provides).

pub mod coordinate;
pub mod keyfile;
pub mod keyring;
pub mod pool;
