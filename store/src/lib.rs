//! A datacenter's replicated state, and nothing else: [`state`] (catalog, health and KV as
//! plain data; `State::apply` is the whole write path), [`raft`] (openraft's storage: a redb
//! log and vote store, a state machine over `State` with snapshot files) and [`proposer`]
//! (writes proposed to Raft, KV writes batched under load).
//!
//! It must not know about networks, HTTP, gossip or the agent: the Raft network, the servers'
//! RPCs and the leader's duties live in `dc-agent::server`, which this crate's wall keeps
//! from reaching back in.
#![warn(missing_docs)]

pub mod proposer;
pub mod raft;
pub mod state;
