use expect_test::{expect, Expect};
use wire::command::{CheckRegistration, Command, Registration, ServiceRegistration};
use wire::records::HealthStatus;

use super::answer::{answer, render, QueryType, Settings};
use crate::state::State;

fn register(
    node: &str,
    address: &str,
    service: Option<(&str, &str, &[&str], &str)>,
    status: HealthStatus,
    meta: &[(&str, &str)],
) -> Command {
    Command::Register(Box::new(Registration {
        node: node.into(),
        address: address.into(),
        datacenter: "dc1".into(),
        node_meta: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        service: service.map(|(id, name, tags, service_address)| ServiceRegistration {
            id: id.into(),
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            address: service_address.into(),
            port: 8080,
            ..Default::default()
        }),
        checks: service
            .map(|(id, ..)| CheckRegistration {
                check_id: format!("{id}-check"),
                name: "check".into(),
                status,
                notes: String::new(),
                output: String::new(),
                service_id: id.into(),
                check_type: String::new(),
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }))
}

fn catalog() -> State {
    let mut state = State::default();
    let commands = [
        register(
            "n1",
            "10.0.0.1",
            Some(("web-1", "web", &["v1", "primary"], "")),
            HealthStatus::Passing,
            &[("rack", "r1")],
        ),
        register(
            "n2",
            "10.0.0.2",
            Some(("web-2", "web", &["v2"], "")),
            HealthStatus::Critical,
            &[],
        ),
        register(
            "n3",
            "10.0.0.3",
            Some(("web-3", "web", &["v2"], "192.168.7.9")),
            HealthStatus::Warning,
            &[],
        ),
        register(
            "n4",
            "fd00::4",
            Some(("api-1", "api", &[], "")),
            HealthStatus::Passing,
            &[("rfc1035-note", "hello")],
        ),
        // An external node registered by host name, with a service.
        register(
            "ext",
            "db.example.com",
            Some(("pg-1", "pg", &[], "")),
            HealthStatus::Passing,
            &[],
        ),
        // Two instances of one service on one node.
        register(
            "n5",
            "10.0.0.5",
            Some(("cache-1", "cache", &[], "")),
            HealthStatus::Passing,
            &[],
        ),
        register(
            "n5",
            "10.0.0.5",
            Some(("cache-2", "cache", &[], "")),
            HealthStatus::Passing,
            &[],
        ),
        // A server.
        register(
            "s1",
            "10.0.0.10",
            Some(("consul", "consul", &[], "")),
            HealthStatus::Passing,
            &[],
        ),
    ];
    for (n, command) in commands.iter().enumerate() {
        state.apply(10 + n as u64, 0, command);
    }
    state
}

fn settings(only_passing: bool) -> Settings {
    Settings {
        domain: "consul".into(),
        datacenter: "dc1".into(),
        service_ttl: Default::default(),
        node_ttl: 0,
        only_passing,
        max_records: None,
    }
}

fn check(qname: &str, qtype: QueryType, expect: Expect) {
    let state = catalog();
    expect.assert_eq(&render(&answer(
        qname,
        qtype,
        &settings(false),
        &state.catalog,
        42,
        1_700_000_000,
    )));
}

#[test]
fn service_a_records_leave_out_critical_instances() {
    check(
        "web.service.consul.",
        QueryType::A,
        expect![[r#"
        status: NoError
        ;; ANSWER
        web.service.consul. 0 A 10.0.0.1
        web.service.consul. 0 A 192.168.7.9
    "#]],
    );
}

#[test]
fn srv_records_name_the_node_or_the_service_address() {
    check(
        "_web._tcp.service.dc1.consul.",
        QueryType::Srv,
        expect![[r#"
        status: NoError
        ;; ANSWER
        _web._tcp.service.dc1.consul. 0 SRV 1 1 8080 n1.node.dc1.consul.
        _web._tcp.service.dc1.consul. 0 SRV 1 1 8080 c0a80709.addr.dc1.consul.
        ;; ADDITIONAL
        n1.node.dc1.consul. 0 A 10.0.0.1
        c0a80709.addr.dc1.consul. 0 A 192.168.7.9
    "#]],
    );
}

#[test]
fn tags_filter_instances() {
    check(
        "primary.web.service.consul.",
        QueryType::A,
        expect![[r#"
        status: NoError
        ;; ANSWER
        primary.web.service.consul. 0 A 10.0.0.1
    "#]],
    );
    check(
        "_web._v2.service.consul.",
        QueryType::Srv,
        expect![[r#"
        status: NoError
        ;; ANSWER
        _web._v2.service.consul. 0 SRV 1 1 8080 c0a80709.addr.dc1.consul.
        ;; ADDITIONAL
        c0a80709.addr.dc1.consul. 0 A 192.168.7.9
    "#]],
    );
}

#[test]
fn only_passing_leaves_out_warnings_too() {
    let state = catalog();
    expect![[r#"
        status: NoError
        ;; ANSWER
        web.service.consul. 0 A 10.0.0.1
    "#]]
    .assert_eq(&render(&answer(
        "web.service.consul",
        QueryType::A,
        &settings(true),
        &state.catalog,
        42,
        1,
    )));
}

#[test]
fn nodes_answer_addresses_and_metadata() {
    check(
        "n1.node.consul.",
        QueryType::Any,
        expect![[r#"
        status: NoError
        ;; ANSWER
        n1.node.consul. 0 A 10.0.0.1
        n1.node.consul. 0 TXT "rack=r1"
    "#]],
    );
    check(
        "n4.node.dc1.consul.",
        QueryType::Aaaa,
        expect![[r#"
        status: NoError
        ;; ANSWER
        n4.node.dc1.consul. 0 AAAA fd00::4
    "#]],
    );
    check(
        "n4.node.consul.",
        QueryType::Txt,
        expect![[r#"
        status: NoError
        ;; ANSWER
        n4.node.consul. 0 TXT "hello"
    "#]],
    );
}

#[test]
fn negative_answers_carry_the_soa() {
    check(
        "nosuch.service.consul.",
        QueryType::A,
        expect![[r#"
        status: NxDomain
        ;; AUTHORITY
        consul. 0 SOA ns.consul. hostmaster.consul. 1700000000 3600 600 86400 0
    "#]],
    );
    check(
        "web.service.consul.",
        QueryType::Txt,
        expect![[r#"
        status: NoError
        ;; AUTHORITY
        consul. 0 SOA ns.consul. hostmaster.consul. 1700000000 3600 600 86400 0
    "#]],
    );
    check(
        "n9.node.consul.",
        QueryType::A,
        expect![[r#"
        status: NxDomain
        ;; AUTHORITY
        consul. 0 SOA ns.consul. hostmaster.consul. 1700000000 3600 600 86400 0
    "#]],
    );
    check(
        "web.service.dc2.consul.",
        QueryType::A,
        expect![[r#"
        status: ServFail
        ;; AUTHORITY
        consul. 0 SOA ns.consul. hostmaster.consul. 1700000000 3600 600 86400 0
    "#]],
    );
    check(
        "example.com.",
        QueryType::A,
        expect![[r#"
        status: Refused
    "#]],
    );
}

#[test]
fn answers_are_shuffled_by_the_seed() {
    let mut state = State::default();
    for n in 1..=8u64 {
        state.apply(
            n,
            0,
            &register(
                &format!("n{n}"),
                &format!("10.0.1.{n}"),
                Some(("web", "web", &[], "")),
                HealthStatus::Passing,
                &[],
            ),
        );
    }
    let order = |seed| {
        render(&answer(
            "web.service.consul",
            QueryType::A,
            &settings(false),
            &state.catalog,
            seed,
            1,
        ))
    };
    assert_ne!(order(1), order(2), "different seeds give different orders");
    assert_eq!(order(7), order(7));
    assert_eq!(order(1).lines().count(), order(2).lines().count());
}

#[test]
fn addr_targets_resolve_and_the_apex_exists() {
    check(
        "c0a80709.addr.dc1.consul.",
        QueryType::A,
        expect![[r#"
        status: NoError
        ;; ANSWER
        c0a80709.addr.dc1.consul. 0 A 192.168.7.9
    "#]],
    );
    check(
        "consul.",
        QueryType::Other,
        expect![[r#"
        status: NoError
        ;; AUTHORITY
        consul. 0 SOA ns.consul. hostmaster.consul. 1700000000 3600 600 86400 0
    "#]],
    );
    check(
        "service.consul.",
        QueryType::A,
        expect![[r#"
        status: NoError
        ;; AUTHORITY
        consul. 0 SOA ns.consul. hostmaster.consul. 1700000000 3600 600 86400 0
    "#]],
    );
}

#[test]
fn names_are_case_insensitive() {
    let mut state = catalog();
    state.apply(
        30,
        0,
        &register(
            "Web-Node",
            "10.0.0.9",
            Some(("myapp-1", "MyApp", &[], "")),
            HealthStatus::Passing,
            &[],
        ),
    );
    let show = |name: &str| {
        render(&answer(
            name,
            QueryType::A,
            &settings(false),
            &state.catalog,
            1,
            1,
        ))
    };
    expect![[r#"
        status: NoError
        ;; ANSWER
        myapp.service.consul. 0 A 10.0.0.9
        status: NoError
        ;; ANSWER
        web-node.node.consul. 0 A 10.0.0.9
    "#]]
    .assert_eq(&format!(
        "{}{}",
        show("myapp.service.consul."),
        show("WEB-NODE.node.consul.")
    ));
}

#[test]
fn service_ttls_pick_the_exact_name_then_the_longest_prefix_then_the_wildcard() {
    let mut settings = settings(false);
    assert_eq!(settings.service_ttl("web"), 0, "no entry: 0, as Consul");
    settings.service_ttl = [("*", 5), ("we*", 10), ("web*", 20), ("web-admin", 30)]
        .into_iter()
        .map(|(name, ttl)| (name.to_owned(), ttl))
        .collect();
    assert_eq!(settings.service_ttl("Web-Admin"), 30);
    assert_eq!(settings.service_ttl("web-api"), 20);
    assert_eq!(settings.service_ttl("west"), 10);
    assert_eq!(settings.service_ttl("db"), 5);
}

#[test]
fn host_name_addresses_are_cnames() {
    check(
        "ext.node.consul.",
        QueryType::A,
        expect![[r#"
            status: NoError
            ;; ANSWER
            ext.node.consul. 0 CNAME db.example.com.
        "#]],
    );
    check(
        "pg.service.consul.",
        QueryType::A,
        expect![[r#"
            status: NoError
            ;; ANSWER
            pg.service.consul. 0 CNAME db.example.com.
        "#]],
    );
    check(
        "pg.service.consul.",
        QueryType::Srv,
        expect![[r#"
            status: NoError
            ;; ANSWER
            pg.service.consul. 0 SRV 1 1 8080 db.example.com.
        "#]],
    );
}

#[test]
fn instances_on_one_node_give_one_address_record() {
    check(
        "cache.service.consul.",
        QueryType::A,
        expect![[r#"
            status: NoError
            ;; ANSWER
            cache.service.consul. 0 A 10.0.0.5
        "#]],
    );
}

#[test]
fn the_apex_answers_soa_and_ns_and_reverse_names_ptr() {
    check(
        "consul.",
        QueryType::Soa,
        expect![[r#"
            status: NoError
            ;; ANSWER
            consul. 0 SOA ns.consul. hostmaster.consul. 1700000000 3600 600 86400 0
        "#]],
    );
    check(
        "consul.",
        QueryType::Ns,
        expect![[r#"
            status: NoError
            ;; ANSWER
            consul. 0 NS s1.node.dc1.consul.
            ;; ADDITIONAL
            s1.node.dc1.consul. 0 A 10.0.0.10
        "#]],
    );
    check(
        "1.0.0.10.in-addr.arpa.",
        QueryType::Ptr,
        expect![[r#"
            status: NoError
            ;; ANSWER
            1.0.0.10.in-addr.arpa. 0 PTR n1.node.dc1.consul.
        "#]],
    );
    check(
        "4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
        QueryType::Ptr,
        expect![[r#"
            status: NoError
            ;; ANSWER
            4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 0 PTR n4.node.dc1.consul.
        "#]],
    );
    check(
        "9.9.9.10.in-addr.arpa.",
        QueryType::Ptr,
        expect![[r#"
            status: NxDomain
            ;; AUTHORITY
            consul. 0 SOA ns.consul. hostmaster.consul. 1700000000 3600 600 86400 0
        "#]],
    );
}
