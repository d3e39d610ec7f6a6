//! The Isthmus federation in one TOML file.
//!
//! [`model::parse`] turns the file into a validated [`model::Topology`], reporting every
//! problem with its file, line and column ([`diagnostic::Diagnostic`]); [`render::plan`]
//! decides every file a render writes; [`summary::summary`] is what `topology check` prints.
//!
//! Invariant: the library performs no I/O. The `topology` binary reads and writes files and
//! passes their contents in and out.
#![warn(missing_docs)]

pub mod acl;
pub mod diagnostic;
pub mod model;
pub mod render;
mod schema;
pub mod summary;

pub use model::{parse, Topology};
