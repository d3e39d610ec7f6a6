//! DNS for the `consul.` domain. The core is pure: [`names::parse`] turns a query name into
//! a typed [`names::Query`], [`answer::answer`] decides the records from a catalog view. The
//! hickory-server handler and the sockets come on top.

pub mod answer;
pub mod names;
pub mod server;
#[cfg(test)]
mod tests;
