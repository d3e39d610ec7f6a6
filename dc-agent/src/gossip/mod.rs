//! Gossip as the agent uses it: the `gossip` crate's pools, keyring and coordinates
//! (re-exported here), and the WAN pool's upkeep on a server (`wan`).

pub use ::gossip::{coordinate, keyfile, keyring, pool};

pub mod wan;
