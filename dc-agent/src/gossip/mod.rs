//! Gossip inside a datacenter (LAN) and between servers (WAN). This module starts with the
//! part every gossip packet goes through: the keyring that encrypts it.

pub mod keyring;
pub mod lan;
