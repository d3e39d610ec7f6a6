//! DNS for the `consul.` domain. The core is pure: [`names::parse`] turns a query name into
//! a typed [`names::Query`], [`answer::answer`] decides the records from a catalog view. The
//! hickory-server handler and the sockets come on top. A server answers from its state
//! machine; a client agent from [`view::RemoteView`], kept current with blocking queries.

pub mod answer;
pub mod names;
pub mod server;
#[cfg(test)]
mod tests;
pub mod view;
