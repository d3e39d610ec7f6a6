//! The DNS listener: a hickory-server `RequestHandler` of our own, over UDP and TCP. It reads
//! the local state machine (a stale read, as Consul's DNS), asks [`super::answer::answer`]
//! and encodes the result; hickory truncates UDP answers to the client's EDNS size and sets
//! the TC bit.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use prometheus::IntCounterVec;

use super::answer::{
    answer, Answer, QueryType, RData as OurData, Rcode, Record as OurRecord, Settings,
};
use crate::raft::state_machine::StateMachineStore;

/// Answers DNS queries from the local catalog.
pub struct DnsHandler {
    state: StateMachineStore,
    settings: Settings,
    queries: IntCounterVec,
}

fn query_type(record_type: RecordType) -> QueryType {
    match record_type {
        RecordType::A => QueryType::A,
        RecordType::AAAA => QueryType::Aaaa,
        RecordType::SRV => QueryType::Srv,
        RecordType::TXT => QueryType::Txt,
        RecordType::ANY => QueryType::Any,
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
    fn decide(&self, qname: &str, qtype: QueryType) -> Option<Answer> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let seed = now.as_nanos() as u64;
        let serial = now.as_secs() as u32;
        self.state
            .read(|data| {
                answer(
                    qname,
                    qtype,
                    &self.settings,
                    &data.state.catalog,
                    seed,
                    serial,
                )
            })
            .ok()
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let decided = match request.request_info() {
            Ok(info) => {
                let qname = info.query.name().to_string();
                let qtype = query_type(info.query.query_type());
                tracing::debug!(qname = %qname, qtype = ?info.query.query_type(), src = %info.src, "dns query");
                // No state to answer from is the server's failure, not the client's.
                self.decide(&qname, qtype).ok_or(ResponseCode::ServFail)
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
                let response = builder.error_msg(&request.metadata, code);
                return match response_handle.send_response(response).await {
                    Ok(info) => info,
                    Err(_) => failed(request),
                };
            }
        };
        let code = match decided.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::ServFail => ResponseCode::ServFail,
            Rcode::Refused => ResponseCode::Refused,
        };
        self.queries
            .with_label_values(&[&format!("{:?}", decided.rcode).to_lowercase()])
            .inc();
        let answers: Vec<Record> = decided.answers.iter().filter_map(to_record).collect();
        let authority: Vec<Record> = decided.authority.iter().filter_map(to_record).collect();
        let additionals: Vec<Record> = decided.additionals.iter().filter_map(to_record).collect();
        let mut metadata = hickory_proto::op::Metadata::response_from_request(&request.metadata);
        metadata.authoritative = decided.rcode != Rcode::Refused;
        metadata.response_code = code;
        let mut builder = builder;
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
            answers.iter(),
            std::iter::empty(),
            authority.iter(),
            additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "could not send a dns answer");
                failed(request)
            }
        }
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
    state: StateMachineStore,
    settings: Settings,
    queries: IntCounterVec,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the DNS port {addr}/udp: {e}"))?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the DNS port {addr}/tcp: {e}"))?;
    let mut server = Server::new(DnsHandler {
        state,
        settings,
        queries,
    });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 65_535);
    tokio::spawn(async move {
        cancel.cancelled().await;
        if let Err(e) = server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "dns server stopped with an error");
        }
    });
    Ok(())
}
