//! Fuzz targets: every parser that takes bytes from a peer, a user or a file, fed anything.
//! Each target must return (an error is fine) and never panic, whatever the input.
//!
//! The same functions run two ways: under libFuzzer (`fuzz/`, `scripts/fuzz.sh`, nightly,
//! as long as asked), and briefly in the test suite over the corpora in `fuzz/corpus/` and
//! mutations of them (`tests/fuzz_smoke.rs`, stable).

use std::net::SocketAddr;
use std::sync::OnceLock;

/// A fuzz target: takes anything, returns, never panics.
pub type Target = fn(&[u8]);

/// The targets by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`). The
/// topology file's target is `topology::model::parse` itself (`fuzz/fuzz_targets/topology_file.rs`).
pub const TARGETS: &[(&str, Target)] = &[
    ("rpc_frame", rpc_frame),
    ("route_header", route_header),
    ("gossip_packet", gossip_packet),
    ("agent_config", agent_config),
    ("http_request", http_request),
    ("dns_name", dns_name),
    ("template", template),
];

/// A template as `dc-agent template` reads it (parsed, then rendered with no answers and
/// with every query's answer made of the same bytes), and the bytes as its configuration
/// file (HCL or JSON).
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ::template::config::Config::parse("fuzz", text);
    let _ = ::template::config::TemplateConfig::from_flag(text);
    let _ = ::template::config::Wait::parse(text);
    let Ok(parsed) = ::template::Template::parse("fuzz", text, None, "node") else {
        return;
    };
    let none = std::sync::Arc::new(::template::Answers::new());
    let Ok(rendered) = parsed.render(&none) else {
        return;
    };
    // Each query the template asked for, answered with the same bytes as its body.
    let answers: ::template::Answers = rendered
        .used
        .iter()
        .filter_map(|dep| Some((dep.clone(), dep.decode(200, data).ok()?)))
        .collect();
    let _ = parsed.render(&std::sync::Arc::new(answers));
}

/// A frame's header and body as a server reads them from a peer: every message type of the
/// RPC and Raft streams.
pub fn rpc_frame(data: &[u8]) {
    if let Some(header) = data.get(..4).and_then(|h| <[u8; 4]>::try_from(h).ok()) {
        let _ = wire::frame::body_len(header);
    }
    let _ = wire::frame::decode::<crate::rpc::messages::RpcRequest>(data);
    let _ = wire::frame::decode::<crate::rpc::messages::RpcReply>(data);
    let _ = wire::frame::decode::<crate::rpc::messages::RaftRequest>(data);
    let _ = wire::frame::decode::<crate::rpc::messages::RaftReply>(data);
    let _ = wire::frame::decode::<wire::command::Command>(data);
}

/// A stream's first frame at a gateway or server, and a routed datagram's header.
pub fn route_header(data: &[u8]) {
    let _ = wire::route::StreamOpen::decode(data);
    let _ = wire::route::DatagramHeader::decode(data);
    let _ = wire::frame::decode::<wire::route::RouteStatus>(data);
    let _ = wire::frame::decode::<wire::route::GatewayInfo>(data);
}

fn gossip_node() -> ::gossip::pool::NodeId {
    ::gossip::pool::NodeId {
        pool: ::gossip::pool::PoolKind::Lan,
        addr: SocketAddr::from(([127, 0, 0, 1], 8301)),
        bump: 1,
        name: "fuzz".to_owned(),
        server: true,
        rpc_port: 8300,
        dc: "dc1".to_owned(),
        build: "fuzz".to_owned(),
    }
}

fn gossip_keyring() -> Option<&'static ::gossip::keyfile::SharedKeyring> {
    static KEYRING: OnceLock<Option<::gossip::keyfile::SharedKeyring>> = OnceLock::new();
    KEYRING
        .get_or_init(|| {
            let key = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=".to_owned();
            let ring = ::gossip::keyring::Keyring::new(&[key]).ok()?;
            Some(::gossip::keyfile::SharedKeyring::new(ring, None))
        })
        .as_ref()
}

/// A gossip packet: decrypted with the keyring (whatever it holds), then, as plaintext and
/// as what decryption gave, handed to a pool's core.
pub fn gossip_packet(data: &[u8]) {
    let now = ::gossip::pool::Now {
        at: std::time::Instant::now(),
        unix_ms: 1_800_000_000_000,
    };
    let from = Some(SocketAddr::from(([127, 0, 0, 2], 8301)));
    let mut plain = ::gossip::pool::PoolCore::new(gossip_node(), None, Vec::new(), now, 7);
    plain.handle_datagram(now, data, from);
    if let Some(keyring) = gossip_keyring() {
        let _ = keyring.read().open(data);
        let mut sealed =
            ::gossip::pool::PoolCore::new(gossip_node(), Some(keyring.clone()), Vec::new(), now, 7);
        let packet = keyring.read().seal([7u8; 12], data);
        sealed.handle_datagram(now, &packet, from);
        sealed.handle_datagram(now, data, from);
    }
}

/// An agent configuration file, as JSON and as HCL.
pub fn agent_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [crate::assemble::Format::Json, crate::assemble::Format::Hcl] {
        let mut warnings = Vec::new();
        let _ = crate::assemble::read_text(text, "fuzz", format, None, &mut warnings);
    }
}

/// An HTTP request: the bytes as a request head (the connection loop's parser), then the
/// first line as a query string parsed as every endpoint parses it and the rest as every
/// body the API decodes.
pub fn http_request(data: &[u8]) {
    // The bytes as a connection's first request head (`http::h1`).
    let _ = crate::http::h1::parse_head(data);
    let (query, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(query) = std::str::from_utf8(query) {
        if let Ok(params) = crate::http::params(Some(query)) {
            let _ = crate::http::Consistency::from_params(&params);
            let _ = crate::http::blocking::wait_of(&params);
            let _ = crate::http::blocking::index_of(&params);
            let _ = crate::http::forward_timeout(&params);
        }
        let _ = wire::percent::decode_query(query);
    }
    use wire::api::*;
    let _ = wire::gojson::from_slice::<RegisterRequest>(body);
    let _ = wire::gojson::from_slice::<DeregisterRequest>(body);
    let _ = wire::gojson::from_slice::<Vec<TxnOpRequest>>(body);
    let _ = wire::gojson::from_slice::<AgentServiceRegistration>(body);
    let _ = wire::gojson::from_slice::<AgentCheckRegistration>(body);
    let _ = wire::gojson::from_slice::<serde_json::Value>(body);
}

/// A DNS question's name.
pub fn dns_name(data: &[u8]) {
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = crate::dns::names::parse(name, "consul");
        let _ = crate::dns::names::parse(name, "example.internal");
    }
}
