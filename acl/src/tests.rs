use super::*;

/// The example of Consul's ACL rules reference, in HCL.
const CONSUL_EXAMPLE_HCL: &str = r#"
# These control access to the key/value store.
key_prefix "" {
  policy = "read"
}
key_prefix "foo/" {
  policy = "write"
}
key_prefix "foo/private/" {
  policy = "deny"
}
# Or for exact key matches
key "foo/bar/secret" {
  policy = "deny"
}

# This controls access to cluster-wide Consul operator information
operator = "read"
"#;

/// The same, in the JSON the reference gives beside it.
const CONSUL_EXAMPLE_JSON: &str = r#"{
  "key_prefix": {
    "": {"policy": "read"},
    "foo/": {"policy": "write"},
    "foo/private/": {"policy": "deny"}
  },
  "key": {
    "foo/bar/secret": {"policy": "deny"}
  },
  "operator": "read"
}"#;

#[test]
fn hcl_and_json_say_the_same() {
    let hcl = Rules::parse(CONSUL_EXAMPLE_HCL).expect("HCL");
    let json = Rules::parse(CONSUL_EXAMPLE_JSON).expect("JSON");
    assert_eq!(hcl, json);
}

#[test]
fn longest_prefix_and_exact_rules_decide_as_consul() {
    let auth = Authorizer::new(Rules::parse(CONSUL_EXAMPLE_HCL).expect("rules"), false);
    let key = |name: &str, need| auth.allows(Resource::Key, name, need);
    assert!(key("anything", Need::Read));
    assert!(!key("anything", Need::Write));
    assert!(key("foo/bar", Need::Write));
    assert!(!key("foo/private/x", Need::Read));
    assert!(!key("foo/bar/secret", Need::Read), "the exact rule wins");
    assert!(
        key("foo/bar/secret2", Need::Write),
        "an exact rule is exact"
    );
    assert!(auth.allows_global(Global::Operator, Need::Read));
    assert!(!auth.allows_global(Global::Operator, Need::Write));
    // Nothing about services: the default (deny) decides.
    assert!(!auth.allows(Resource::Service, "web", Need::Read));
    // A recursive write under foo/ meets the deny under it.
    assert!(!auth.allows_all_under(Resource::Key, "foo/", Need::Write));
    assert!(
        !auth.allows_all_under(Resource::Key, "foo/bar/", Need::Write),
        "foo/bar/secret"
    );
    assert!(auth.allows_all_under(Resource::Key, "foo/baz/", Need::Write));
}

#[test]
fn the_default_policy_fills_the_gaps() {
    let rules = Rules::parse(r#"key_prefix "app/" { policy = "deny" }"#).expect("rules");
    let allow = Authorizer::new(rules.clone(), true);
    assert!(allow.allows(Resource::Key, "other", Need::Write));
    assert!(!allow.allows(Resource::Key, "app/x", Need::Read));
    assert!(allow.allows_global(Global::Keyring, Need::Write));
    // `allow` never manages ACLs by itself.
    assert!(!allow.allows_global(Global::Acl, Need::Read));
    assert!(!Authorizer::new(Rules::default(), true).allows_global(Global::Acl, Need::Write));
    let deny = Authorizer::new(rules, false);
    assert!(!deny.allows(Resource::Key, "other", Need::Read));
    assert!(!deny.allows_global(Global::Keyring, Need::Read));
    assert!(Authorizer::management().allows(Resource::Key, "app/x", Need::Write));
}

#[test]
fn policies_merge_with_deny_over_write_over_list_over_read() {
    let mut rules = Rules::parse(r#"key_prefix "a/" { policy = "read" }"#).expect("rules");
    rules.merge(&Rules::parse(r#"key_prefix "a/" { policy = "write" }"#).expect("rules"));
    let auth = Authorizer::new(rules.clone(), false);
    assert!(auth.allows(Resource::Key, "a/x", Need::Write));
    rules.merge(&Rules::parse(r#"{"key_prefix": {"a/": {"policy": "deny"}}}"#).expect("rules"));
    assert!(!Authorizer::new(rules, false).allows(Resource::Key, "a/x", Need::Read));
    assert_eq!(Access::Read.merge(Access::List), Access::List);
    assert!(Access::List.grants(Need::List) && !Access::Read.grants(Need::List));
}

#[test]
fn every_resource_of_consuls_language_parses() {
    let text = r#"
        agent_prefix "" { policy = "read" }
        agent "s1" { policy = "write" }
        event_prefix "deploy" { policy = "write" }
        node_prefix "" { policy = "read" }
        query_prefix "" { policy = "read" }
        service_prefix "" { policy = "read" }
        service "web" { policy = "write" }
        session_prefix "" { policy = "write" }
        key_prefix "" { policy = "list" }
        keyring = "write"
        operator = "read"
        acl = "read"
        mesh = "read"
        peering = "read"
    "#;
    let auth = Authorizer::new(Rules::parse(text).expect("rules"), false);
    assert!(auth.allows(Resource::Agent, "s1", Need::Write));
    assert!(!auth.allows(Resource::Agent, "s2", Need::Write));
    assert!(auth.allows(Resource::Event, "deploy-web", Need::Write));
    assert!(!auth.allows(Resource::Event, "other", Need::Read));
    assert!(auth.allows(Resource::Session, "any", Need::Write));
    assert!(auth.allows(Resource::Key, "x", Need::List));
    assert!(auth.allows_global(Global::Keyring, Need::Write));
    assert!(!auth.allows_global(Global::Acl, Need::Write));
}

#[test]
fn bad_rules_are_refused_by_name() {
    let err = |text: &str| {
        Rules::parse(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(err(r#"kee "a" { policy = "read" }"#).contains("unknown resource \"kee\""));
    assert!(err(r#"key "a" { policy = "sudo" }"#).contains("invalid policy \"sudo\""));
    assert!(err(r#"key "a" { }"#).contains("has no policy"));
    assert!(err("key {").contains("Failed to parse ACL rules"));
    assert_eq!(Rules::parse("  "), Ok(Rules::default()));
}

#[test]
fn identities_are_consuls_templates() {
    let web = Authorizer::new(Rules::service_identity("web"), false);
    assert!(web.allows(Resource::Service, "web", Need::Write));
    assert!(web.allows(Resource::Service, "web-sidecar-proxy", Need::Write));
    assert!(web.allows(Resource::Service, "db", Need::Read));
    assert!(!web.allows(Resource::Service, "db", Need::Write));
    assert!(web.allows(Resource::Node, "n1", Need::Read));
    let node = Authorizer::new(Rules::node_identity("c1"), false);
    assert!(node.allows(Resource::Node, "c1", Need::Write));
    assert!(!node.allows(Resource::Node, "c2", Need::Write));
    assert!(node.allows(Resource::Service, "web", Need::Read));
}
