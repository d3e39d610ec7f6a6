//! Health checks an agent runs for its services. The core decides statuses from results
//! ([`status::CheckState`]); the runners (http, tcp, script, ttl) that produce results come
//! on top.

pub mod run;
pub mod status;
