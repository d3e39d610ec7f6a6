//! The agent's DNS interface as `run` starts it: the answering settings, the source of
//! names (the server's state or a client's view) and, with ACLs, the default token's view.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{dns_source, Core, Prepared};
use crate::http::Api;

/// The DNS interface, unless `ports.dns = -1`.
pub(super) async fn start_dns(
    prepared: &Prepared,
    core: &Core,
    handler: crate::rpc::messages::HttpHandler,
    acl: Option<crate::dns::server::DnsAcl>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let v = &prepared.validated;
    let Some(port) = v.ports.dns else {
        return Ok(());
    };
    let settings = crate::dns::answer::Settings {
        domain: v.domain.clone(),
        datacenter: v.datacenter.clone(),
        service_ttl: v.dns.service_ttl.clone(),
        node_ttl: v.dns.node_ttl,
        only_passing: v.dns.only_passing,
        max_records: v.dns.a_record_limit,
    };
    let source = dns_source(core.server.as_ref(), v, handler, &prepared.metrics, cancel);
    crate::dns::server::serve(
        SocketAddr::new(v.client_addr, port),
        source,
        settings,
        crate::dns::server::Recursion {
            recursors: v.dns.recursors.clone(),
            timeout: v.dns.recursor_timeout,
        },
        prepared.metrics.dns_queries.clone(),
        acl,
        cancel.child_token(),
    )
    .await
}

/// With ACLs, what DNS may show: the default token's authorizer (as Consul's DNS uses it),
/// resolved again every 2 s (a client agent asks a server, within `token_ttl`). Until the
/// first resolution, and for a token that no longer exists, DNS shows nothing.
pub(super) fn dns_acl(
    api: &Api,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Option<crate::dns::server::DnsAcl> {
    let settings = api.acl.clone()?;
    let acl = crate::dns::server::DnsAcl::default();
    let (api, shared, cancel) = (api.clone(), acl.clone(), cancel.clone());
    tasks.spawn(async move {
        use crate::http::acl::{resolve, ResolveError};
        loop {
            match resolve(&api, &settings, None).await {
                Ok(resolved) => *shared.write() = Some(resolved.authorizer),
                Err(ResolveError::NotFound) => *shared.write() = None,
                // No server to ask: keep what is known (down_policy's extend-cache).
                Err(ResolveError::Unreachable(_) | ResolveError::Misconfigured(_)) => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    });
    Some(acl)
}
