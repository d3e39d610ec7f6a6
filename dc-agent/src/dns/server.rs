//! The DNS listener: a hickory-server `RequestHandler` of our own, over UDP and TCP. It reads
//! the local state machine on a server (a stale read, as Consul's DNS) or the client
//! agent's [`super::view::RemoteView`], asks [`super::answer::answer`]
//! and encodes the result; hickory truncates UDP answers to the client's EDNS size and sets
//! the TC bit. Names outside the domain go to the configured recursors, tried in order over
//! the client's protocol, and their answer is passed back (Consul's `recursors`).

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use prometheus::IntCounterVec;

use super::answer::{
    answer, Answer, QueryType, RData as OurData, Rcode, Record as OurRecord, Settings,
};
use crate::raft::state_machine::StateMachineStore;

/// Where names outside the domain go.
#[derive(Debug, Clone, Default)]
pub struct Recursion {
    /// Upstream servers, tried in order.
    pub recursors: Vec<SocketAddr>,
    /// How long to wait for each.
    pub timeout: Duration,
}

/// What the answers are read from.
#[derive(Clone)]
pub enum Source {
    /// A server's own state machine (a stale read, as Consul's DNS). `lag` says how long
    /// since this server last heard from its leader; past `max_stale` it does not answer.
    Local {
        /// The state machine.
        state: StateMachineStore,
        /// Time since the leader was last heard from (zero on the leader).
        lag: std::sync::Arc<dyn Fn() -> Duration + Send + Sync>,
        /// `dns_config.max_stale`.
        max_stale: Duration,
        /// Other datacenters' names, through the gateways (servers with gateways only).
        remote: Option<super::view::RemoteView>,
    },
    /// A client agent's view, kept current from the servers.
    Remote(super::view::RemoteView),
}

/// What DNS may show when ACLs are on: the default token's authorizer, kept current by
/// the agent (none inside: not resolved yet, so nothing).
pub type DnsAcl = std::sync::Arc<parking_lot::RwLock<Option<acl::Authorizer>>>;

/// Answers DNS queries from the catalog.
pub struct DnsHandler {
    source: Source,
    settings: Settings,
    recursion: Recursion,
    queries: IntCounterVec,
    acl: Option<DnsAcl>,
}

impl DnsHandler {
    /// `answer` over `view`, seen through the DNS token when ACLs are on.
    fn answer_with(
        &self,
        qname: &str,
        qtype: QueryType,
        settings: &Settings,
        view: &dyn super::answer::CatalogView,
        seed: u64,
        serial: u32,
    ) -> Answer {
        match &self.acl {
            None => answer(qname, qtype, settings, view, seed, serial),
            Some(acl) => {
                let auth = acl.read().clone();
                let filtered = super::answer::Filtered {
                    inner: view,
                    auth: auth.as_ref(),
                };
                answer(qname, qtype, settings, &filtered, seed, serial)
            }
        }
    }
}

/// Sends `query` to `upstream` and returns its answer: over TCP (length-prefixed) when the
/// client asked over TCP, else over UDP from a fresh port.
async fn exchange(
    upstream: SocketAddr,
    query: &[u8],
    tcp: bool,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        if tcp {
            let length = u16::try_from(query.len()).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "query longer than 64 KiB")
            })?;
            let mut stream = tokio::net::TcpStream::connect(upstream).await?;
            stream.write_all(&length.to_be_bytes()).await?;
            stream.write_all(query).await?;
            let mut length = [0u8; 2];
            stream.read_exact(&mut length).await?;
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut answer).await?;
            Ok(answer)
        } else {
            let local: SocketAddr = if upstream.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = tokio::net::UdpSocket::bind(local).await?;
            socket.connect(upstream).await?;
            socket.send(query).await?;
            let mut answer = vec![0u8; 65_535];
            let n = socket.recv(&mut answer).await?;
            answer.truncate(n);
            Ok(answer)
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))?
}

fn query_type(record_type: RecordType) -> QueryType {
    match record_type {
        RecordType::A => QueryType::A,
        RecordType::AAAA => QueryType::Aaaa,
        RecordType::SRV => QueryType::Srv,
        RecordType::TXT => QueryType::Txt,
        RecordType::ANY => QueryType::Any,
        RecordType::NS => QueryType::Ns,
        RecordType::SOA => QueryType::Soa,
        RecordType::PTR => QueryType::Ptr,
        _ => QueryType::Other,
    }
}

fn name(text: &str) -> Option<Name> {
    Name::from_str(text).ok()
}

fn to_record(record: &OurRecord) -> Option<Record> {
    let data = match &record.data {
        OurData::A(ip) => RData::A(rdata::A(*ip)),
        OurData::Aaaa(ip) => RData::AAAA(rdata::AAAA(*ip)),
        OurData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(rdata::SRV::new(*priority, *weight, *port, name(target)?)),
        OurData::Txt(texts) => RData::TXT(rdata::TXT::new(texts.clone())),
        OurData::Cname(target) => RData::CNAME(rdata::CNAME(name(target)?)),
        OurData::Ns(target) => RData::NS(rdata::NS(name(target)?)),
        OurData::Ptr(target) => RData::PTR(rdata::PTR(name(target)?)),
        OurData::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => RData::SOA(rdata::SOA::new(
            name(mname)?,
            name(rname)?,
            *serial,
            i32::try_from(*refresh).unwrap_or(i32::MAX),
            i32::try_from(*retry).unwrap_or(i32::MAX),
            i32::try_from(*expire).unwrap_or(i32::MAX),
            *minimum,
        )),
    };
    Some(Record::from_rdata(name(&record.name)?, record.ttl, data))
}

impl DnsHandler {
    /// Asks the recursors in order; the first NOERROR or NXDOMAIN answer to this query wins.
    async fn recurse(&self, request: &Request) -> Option<Message> {
        let tcp = request.protocol() == hickory_server::net::xfer::Protocol::Tcp;
        for upstream in &self.recursion.recursors {
            let answer = exchange(*upstream, request.as_slice(), tcp, self.recursion.timeout)
                .await
                .map_err(|e| e.to_string())
                .and_then(|bytes| Message::from_vec(&bytes).map_err(|e| e.to_string()))
                .and_then(|message| {
                    let code = message.metadata.response_code;
                    if message.metadata.id != request.metadata.id {
                        Err("the answer is for another query".to_owned())
                    } else if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
                        // As Consul: a failing recursor is passed over, not passed on.
                        Err(format!("it answered {code}"))
                    } else {
                        Ok(message)
                    }
                });
            match answer {
                Ok(message) => return Some(message),
                Err(error) => {
                    tracing::debug!(recursor = %upstream, error = %error, "recursor did not answer");
                }
            }
        }
        None
    }

    /// Decides the answer; `None` when there is nothing current to answer from.
    async fn decide(&self, qname: &str, qtype: QueryType) -> Option<Answer> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let seed = now.as_nanos() as u64;
        let serial = now.as_secs() as u32;
        // Another datacenter's name: answered from the view of it (kept current through the
        // gateways), as that datacenter would answer it.
        let parsed = super::names::parse(qname, &self.settings.domain).ok();
        let other_dc = parsed
            .as_ref()
            .and_then(super::names::Query::datacenter)
            .filter(|dc| !dc.eq_ignore_ascii_case(&self.settings.datacenter))
            .map(str::to_owned);
        if let (Some(dc), Some(query)) = (other_dc, &parsed) {
            let view = match &self.source {
                Source::Local { remote, .. } => remote.as_ref(),
                Source::Remote(view) => Some(view),
            }?;
            let prepared = match view.prepare(query).await {
                Ok(prepared) => prepared,
                Err(e) => {
                    tracing::debug!(qname = %qname, error = %e, "no current answer from another datacenter");
                    return None;
                }
            };
            let mut settings = self.settings.clone();
            settings.datacenter = dc;
            return Some(self.answer_with(qname, qtype, &settings, &prepared, seed, serial));
        }
        match &self.source {
            Source::Local { lag, max_stale, .. } if lag() > *max_stale => {
                tracing::debug!(qname = %qname, lag = ?lag(), "this server is further behind its leader than max_stale");
                None
            }
            Source::Local { state, .. } => state
                .read(|data| {
                    self.answer_with(
                        qname,
                        qtype,
                        &self.settings,
                        &data.state.catalog,
                        seed,
                        serial,
                    )
                })
                .ok(),
            Source::Remote(view) => {
                let prepared = match &parsed {
                    Some(query) => match view.prepare(query).await {
                        Ok(prepared) => prepared,
                        Err(e) => {
                            tracing::debug!(qname = %qname, error = %e, "no current answer");
                            return None;
                        }
                    },
                    None => match view.prepare_other(qname, &self.settings.domain).await {
                        Ok(prepared) => prepared,
                        Err(e) => {
                            tracing::debug!(qname = %qname, error = %e, "no current answer");
                            return None;
                        }
                    },
                };
                Some(self.answer_with(qname, qtype, &self.settings, &prepared, seed, serial))
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let decided = match request.request_info() {
            Ok(info) => {
                let qname = info.query.name().to_string();
                let qtype = query_type(info.query.query_type());
                tracing::debug!(qname = %qname, qtype = ?info.query.query_type(), src = %info.src, "dns query");
                // No state to answer from is the server's failure, not the client's.
                self.decide(&qname, qtype)
                    .await
                    .ok_or(ResponseCode::ServFail)
            }
            Err(_) => Err(ResponseCode::FormErr),
        };
        let decided = match decided {
            Ok(decided) => decided,
            Err(code) => {
                let label = if code == ResponseCode::ServFail {
                    "servfail"
                } else {
                    "formerr"
                };
                self.queries.with_label_values(&[label]).inc();
                return send_error(request, builder, response_handle, code).await;
            }
        };
        if (decided.rcode == Rcode::Refused || decided.recurse_first)
            && !self.recursion.recursors.is_empty()
        {
            return self.answer_recursively(request, response_handle).await;
        }
        let code = match decided.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::ServFail => ResponseCode::ServFail,
            Rcode::Refused => ResponseCode::Refused,
        };
        let label = match decided.rcode {
            Rcode::NoError => "noerror",
            Rcode::NxDomain => "nxdomain",
            Rcode::ServFail => "servfail",
            Rcode::Refused => "refused",
        };
        self.queries.with_label_values(&[label]).inc();
        let answers: Vec<Record> = decided.answers.iter().filter_map(to_record).collect();
        let authority: Vec<Record> = decided.authority.iter().filter_map(to_record).collect();
        let additionals: Vec<Record> = decided.additionals.iter().filter_map(to_record).collect();
        let mut metadata = hickory_proto::op::Metadata::response_from_request(&request.metadata);
        metadata.authoritative = decided.rcode != Rcode::Refused;
        metadata.response_code = code;
        let sections = Sections {
            answers: &answers,
            authorities: &[],
            soa: &authority,
            additionals: &additionals,
        };
        send(request, builder, response_handle, metadata, sections).await
    }
}

/// The record sections of an answer.
struct Sections<'a> {
    answers: &'a [Record],
    authorities: &'a [Record],
    soa: &'a [Record],
    additionals: &'a [Record],
}

/// Sends an answer, with EDNS when the query had it (its payload size, at least 512).
async fn send<R: ResponseHandler>(
    request: &Request,
    mut builder: MessageResponseBuilder<'_>,
    mut response_handle: R,
    metadata: hickory_proto::op::Metadata,
    sections: Sections<'_>,
) -> ResponseInfo {
    let edns = request.edns.as_ref().map(|theirs| {
        let mut ours = Edns::new();
        ours.set_max_payload(theirs.max_payload().max(512));
        ours
    });
    if let Some(edns) = &edns {
        builder.edns(edns);
    }
    let response = builder.build(
        metadata,
        sections.answers.iter(),
        sections.authorities.iter(),
        sections.soa.iter(),
        sections.additionals.iter(),
    );
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "could not send a dns answer");
            failed(request)
        }
    }
}

impl DnsHandler {
    /// Answers a name outside the domain with the recursors' answer, or SERVFAIL when none
    /// of them gave one.
    async fn answer_recursively<R: ResponseHandler>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let Some(upstream) = self.recurse(request).await else {
            tracing::warn!(
                recursors = ?self.recursion.recursors,
                "no recursor answered; replying SERVFAIL"
            );
            self.queries.with_label_values(&["recursor_failed"]).inc();
            return send_error(request, builder, response_handle, ResponseCode::ServFail).await;
        };
        self.queries.with_label_values(&["recursed"]).inc();
        let mut metadata = upstream.metadata;
        metadata.authoritative = false;
        metadata.recursion_available = true;
        let sections = Sections {
            answers: &upstream.answers,
            authorities: &upstream.authorities,
            soa: &[],
            additionals: &upstream.additionals,
        };
        send(request, builder, response_handle, metadata, sections).await
    }
}

/// Sends an answer with no records and `code`.
async fn send_error<R: ResponseHandler>(
    request: &Request,
    builder: MessageResponseBuilder<'_>,
    mut response_handle: R,
    code: ResponseCode,
) -> ResponseInfo {
    let response = builder.error_msg(&request.metadata, code);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => failed(request),
    }
}

/// What to report when an answer could not be sent.
fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = hickory_proto::op::Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_proto::op::Header {
        metadata,
        counts: hickory_proto::op::HeaderCounts::default(),
    })
}

/// Serves DNS on `addr` (UDP and TCP) until `cancel` fires.
pub async fn serve(
    addr: SocketAddr,
    source: Source,
    settings: Settings,
    recursion: Recursion,
    queries: IntCounterVec,
    acl: Option<DnsAcl>,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the DNS port {addr}/udp: {e}"))?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the DNS port {addr}/tcp: {e}"))?;
    let mut server = Server::new(DnsHandler {
        source,
        settings,
        recursion,
        queries,
        acl,
    });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 65_535);
    crate::tasks::spawn(async move {
        cancel.cancelled().await;
        if let Err(e) = server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "dns server stopped with an error");
        }
    });
    Ok(())
}
