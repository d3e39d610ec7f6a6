//! Gossip: the LAN pool of a datacenter's agents and the WAN pool of every datacenter's
//! servers (`pool`), the keyring that encrypts every packet of both (`keyring`), and the
//! WAN pool's upkeep on a server (`wan`).

pub mod coordinate;
pub mod keyfile;
pub mod keyring;
pub mod pool;
pub mod wan;
