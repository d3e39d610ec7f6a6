use super::*;
use serde_json::json;

fn filter(expression: &str) -> Filter {
    match Filter::parse(expression) {
        Ok(filter) => filter,
        Err(e) => panic!("{expression:?} should parse: {e}"),
    }
}

fn error(expression: &str) -> String {
    match Filter::parse(expression) {
        Ok(filter) => panic!("{expression:?} should not parse: {filter:?}"),
        Err(e) => {
            assert!(e.starts_with(ERROR_PREFIX), "{e}");
            e
        }
    }
}

/// The keys (map) or the `field` values (array) that `expression` keeps.
fn kept(expression: &str, data: &Value, field: &str) -> Vec<String> {
    match apply(&filter(expression), data.clone()) {
        Value::Object(map) => map.keys().cloned().collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let mut value = item;
                for segment in field.split('.') {
                    value = &value[segment];
                }
                value.as_str().unwrap_or_default().to_owned()
            })
            .collect(),
        other => panic!("unexpected {other}"),
    }
}

/// `/v1/agent/services`, from Consul's filtering docs.
fn agent_services() -> Value {
    json!({
        "redis1": {
            "ID": "redis1", "Service": "redis", "Tags": ["primary", "production"],
            "Meta": {"env": "production", "foo": "bar"}, "Port": 1234, "Address": "",
            "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false
        },
        "redis2": {
            "ID": "redis2", "Service": "redis", "Tags": ["secondary", "production"],
            "Meta": {"env": "production", "foo": "bar"}, "Port": 1235, "Address": "",
            "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false
        },
        "redis3": {
            "ID": "redis3", "Service": "redis", "Tags": ["primary", "qa"],
            "Meta": {"env": "qa"}, "Port": 1234, "Address": "",
            "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false
        }
    })
}

/// `/v1/catalog/service/api-internal`, from Consul's filtering docs.
fn catalog_service() -> Value {
    json!([
        {
            "ID": "b4f64e8c-5c7d-11e9-bf68-8c8590bd0966", "Node": "node-1",
            "Address": "198.18.0.1", "Datacenter": "dc1", "TaggedAddresses": null,
            "NodeMeta": {"agent": "true", "arch": "i386", "os": "darwin"},
            "ServiceKind": "", "ServiceID": "api-internal", "ServiceName": "api-internal",
            "ServiceTags": ["tag"], "ServiceAddress": "",
            "ServiceWeights": {"Passing": 1, "Warning": 1},
            "ServiceMeta": {"environment": "qa"}, "ServicePort": 9090,
            "ServiceEnableTagOverride": false, "ServiceProxy": {}, "ServiceConnect": {},
            "CreateIndex": 30, "ModifyIndex": 30
        },
        {
            "ID": "b4faf93a-5c7d-11e9-840d-8c8590bd0966", "Node": "node-2",
            "Address": "198.18.0.2", "Datacenter": "dc1", "TaggedAddresses": null,
            "NodeMeta": {"arch": "arm", "os": "linux"},
            "ServiceKind": "", "ServiceID": "api-internal", "ServiceName": "api-internal",
            "ServiceTags": ["test", "tag"], "ServiceAddress": "",
            "ServiceWeights": {"Passing": 1, "Warning": 1},
            "ServiceMeta": {"environment": "production"}, "ServicePort": 9090,
            "ServiceEnableTagOverride": false, "ServiceProxy": {}, "ServiceConnect": {},
            "CreateIndex": 29, "ModifyIndex": 29
        },
        {
            "ID": "b4fbe7f4-5c7d-11e9-ac82-8c8590bd0966", "Node": "node-4",
            "Address": "198.18.0.4", "Datacenter": "dc1", "TaggedAddresses": null,
            "NodeMeta": {"arch": "i386", "os": "freebsd"},
            "ServiceKind": "", "ServiceID": "api-internal", "ServiceName": "api-internal",
            "ServiceTags": [], "ServiceAddress": "",
            "ServiceWeights": {"Passing": 1, "Warning": 1},
            "ServiceMeta": {"environment": "qa"}, "ServicePort": 9090,
            "ServiceEnableTagOverride": false, "ServiceProxy": {}, "ServiceConnect": {},
            "CreateIndex": 28, "ModifyIndex": 28
        }
    ])
}

/// `/v1/health/node/node-1`, from Consul's filtering docs.
fn health_node() -> Value {
    json!([
        {
            "Node": "node-1", "CheckID": "node-health", "Name": "Node level check",
            "Status": "critical", "Notes": "", "Output": "", "ServiceID": "",
            "ServiceName": "", "ServiceTags": [], "Definition": {},
            "CreateIndex": 13, "ModifyIndex": 13
        },
        {
            "Node": "node-1", "CheckID": "svc-web-health",
            "Name": "Service level check - web", "Status": "warning", "Notes": "",
            "Output": "", "ServiceID": "", "ServiceName": "web", "ServiceTags": [],
            "Definition": {}, "CreateIndex": 18, "ModifyIndex": 18
        }
    ])
}

/// `/v1/health/service/web`: Node, Service and a list of Checks per entry.
fn health_service() -> Value {
    let check = |node: &str, id: &str, status: &str, tags: Value| {
        json!({
            "Node": node, "CheckID": id, "Name": id, "Status": status, "Notes": "",
            "Output": "", "ServiceID": "", "ServiceName": "", "ServiceTags": tags
        })
    };
    json!([
        {
            "Node": {
                "ID": "40e4a748-2192-161a-0510-9bf59fe950b5", "Node": "node-1",
                "Address": "10.0.0.1", "Datacenter": "dc1",
                "TaggedAddresses": {"lan": "10.0.0.1", "wan": "198.18.0.1"},
                "Meta": {"instance_type": "t2.medium"}
            },
            "Service": {
                "ID": "web1", "Service": "web", "Tags": ["primary", "v1"], "Address": "",
                "Meta": {"version": "1.2.3", "my-key": "yes"}, "Port": 8080,
                "Weights": {"Passing": 10, "Warning": 1}, "EnableTagOverride": false
            },
            "Checks": [
                check("node-1", "serfHealth", "passing", json!([])),
                check("node-1", "service:web1", "passing", json!(["primary", "v1"]))
            ]
        },
        {
            "Node": {
                "ID": "5ec8ab4a-0cb0-4e7e-a4b0-1c0b3bbd1ad5", "Node": "node-2",
                "Address": "10.0.0.2", "Datacenter": "dc1", "TaggedAddresses": null,
                "Meta": {"instance_type": "t2.large"}
            },
            "Service": {
                "ID": "web2", "Service": "web", "Tags": ["secondary"], "Address": "10.1.0.2",
                "Meta": {"version": "2.0.0"}, "Port": 8081,
                "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": true
            },
            "Checks": [
                check("node-2", "serfHealth", "passing", json!([])),
                check("node-2", "service:web2", "critical", json!(["secondary"]))
            ]
        },
        {
            "Node": {
                "ID": "b3f6e6c0-8e0b-4fa2-9a57-7d1f1c5c4b22", "Node": "node-3",
                "Address": "10.0.0.3", "Datacenter": "dc1", "TaggedAddresses": {},
                "Meta": {}
            },
            "Service": {
                "ID": "web3", "Service": "web", "Tags": [], "Address": "",
                "Meta": {}, "Port": 8082,
                "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false
            },
            "Checks": []
        }
    ])
}

#[test]
fn docs_agent_example_meta_env_qa() {
    assert_eq!(
        kept(r#"Meta.env == "qa""#, &agent_services(), ""),
        ["redis3"]
    );
    let filtered = apply(&filter(r#"Meta.env == "qa""#), agent_services());
    assert_eq!(
        filtered,
        json!({ "redis3": agent_services()["redis3"].clone() })
    );
}

#[test]
fn docs_catalog_example_node_meta_os() {
    let data = catalog_service();
    assert_eq!(kept(r#"NodeMeta.os == "linux""#, &data, "Node"), ["node-2"]);
    assert_eq!(
        kept(r#"NodeMeta.os != "linux""#, &data, "Node"),
        ["node-1", "node-4"]
    );
}

#[test]
fn docs_health_node_example_service_name_not_empty() {
    let data = health_node();
    assert_eq!(
        kept(r#"ServiceName != """#, &data, "CheckID"),
        ["svc-web-health"]
    );
    assert_eq!(
        kept("ServiceName is not empty", &data, "CheckID"),
        ["svc-web-health"]
    );
    assert_eq!(
        kept("ServiceName is empty", &data, "CheckID"),
        ["node-health"]
    );
}

#[test]
fn docs_operator_forms_all_parse() {
    for expression in [
        r#"Meta.env == "qa""#,
        r#"Meta.env != "qa""#,
        "Meta.env is empty",
        "Meta.env is not empty",
        r#""qa" in Meta.env"#,
        r#""qa" not in Meta.env"#,
        r#"Meta.env contains "qa""#,
        r#"Meta.env not contains "qa""#,
        r#"Meta.env matches "q.""#,
        r#"Meta.env not matches "q.""#,
        "ServiceMeta.foo == bar",
        r#"ServiceMeta["foo"] == bar"#,
        "Port == 1234 and not Meta.env == qa or Tags is empty",
        "( Port == 1234 and ( not Meta.env == qa ) ) or Tags is empty",
        "  (Port==1234)  ",
    ] {
        filter(expression);
    }
}

#[test]
fn equality_with_bare_quoted_and_raw_values() {
    let data = agent_services();
    for expression in [
        "Meta.env == qa",
        r#"Meta.env == "qa""#,
        "Meta.env == `qa`",
        r#"Meta["env"] == qa"#,
        "Meta[`env`] == qa",
        r#"Meta[ "env" ] == qa"#,
    ] {
        assert_eq!(kept(expression, &data, ""), ["redis3"], "{expression}");
    }
    assert_eq!(kept("Meta.env != qa", &data, ""), ["redis1", "redis2"]);
}

#[test]
fn in_and_contains_on_lists() {
    let data = agent_services();
    for expression in [
        "primary in Tags",
        r#""primary" in Tags"#,
        "Tags contains primary",
        "Tags contains `primary`",
    ] {
        assert_eq!(
            kept(expression, &data, ""),
            ["redis1", "redis3"],
            "{expression}"
        );
    }
    assert_eq!(kept("primary not in Tags", &data, ""), ["redis2"]);
    assert_eq!(kept("Tags not contains primary", &data, ""), ["redis2"]);
    // Element equality, not substring.
    assert!(kept("prim in Tags", &data, "").is_empty());
}

#[test]
fn in_and_contains_on_maps_test_keys() {
    let data = agent_services();
    assert_eq!(kept("foo in Meta", &data, ""), ["redis1", "redis2"]);
    assert_eq!(kept("Meta contains foo", &data, ""), ["redis1", "redis2"]);
    assert_eq!(kept("foo not in Meta", &data, ""), ["redis3"]);
    // Values are not keys.
    assert!(kept("bar in Meta", &data, "").is_empty());
}

#[test]
fn in_and_contains_on_strings_are_substring() {
    let data = agent_services();
    assert_eq!(kept("Service contains edi", &data, "").len(), 3);
    assert_eq!(kept(r#""dis" in Service"#, &data, "").len(), 3);
    assert_eq!(kept("ID contains 3", &data, ""), ["redis3"]);
    assert_eq!(kept("ID not contains 3", &data, ""), ["redis1", "redis2"]);
    assert_eq!(kept(r#""" in ID"#, &data, "").len(), 3);
}

#[test]
fn emptiness_of_strings_lists_maps_null_and_missing() {
    let data = catalog_service();
    assert_eq!(kept("ServiceTags is empty", &data, "Node"), ["node-4"]);
    assert_eq!(
        kept("ServiceTags is not empty", &data, "Node"),
        ["node-1", "node-2"]
    );
    assert_eq!(kept("ServiceAddress is empty", &data, "Node").len(), 3);
    assert_eq!(kept("ServiceProxy is empty", &data, "Node").len(), 3);
    assert_eq!(kept("NodeMeta is not empty", &data, "Node").len(), 3);
    // TaggedAddresses is null: empty.
    assert_eq!(kept("TaggedAddresses is empty", &data, "Node").len(), 3);
    // A missing map key is empty.
    assert_eq!(
        kept("NodeMeta.agent is empty", &data, "Node"),
        ["node-2", "node-4"]
    );
    assert_eq!(
        kept("NodeMeta.agent is not empty", &data, "Node"),
        ["node-1"]
    );
    // Numbers have no emptiness: false either way.
    assert!(kept("ServicePort is empty", &data, "Node").is_empty());
    assert!(kept("ServicePort is not empty", &data, "Node").is_empty());
}

#[test]
fn missing_keys_follow_bexpr_not_present_rule() {
    let data = agent_services();
    assert_eq!(kept("Meta.foo == bar", &data, "").len(), 2);
    assert_eq!(kept("Meta.foo != bar", &data, ""), ["redis3"]);
    assert!(kept("Meta.nope == x", &data, "").is_empty());
    assert_eq!(kept("Meta.nope != x", &data, "").len(), 3);
    assert!(kept("x in Meta.nope", &data, "").is_empty());
    assert_eq!(kept("x not in Meta.nope", &data, "").len(), 3);
    assert!(kept("Meta.nope matches x", &data, "").is_empty());
    assert_eq!(kept("Meta.nope not matches x", &data, "").len(), 3);
    // An unknown top-level field is treated the same way (Consul would answer 400).
    assert!(kept("Servce == redis", &data, "").is_empty());
    assert_eq!(kept("Servce is empty", &data, "").len(), 3);
    // Descending into a scalar never matches, negated or not.
    assert!(kept("Service.Name == redis", &data, "").is_empty());
    assert!(kept("Service.Name != redis", &data, "").is_empty());
    assert!(kept("Port.x is empty", &data, "").is_empty());
}

#[test]
fn numbers_compare_numerically() {
    let data = agent_services();
    for expression in [
        "Port == 1234",
        r#"Port == "1234""#,
        "Port == `1234`",
        r#"Port == "0x4d2""#,
        r#"Port == "+1234""#,
        "Port == 1234.0",
    ] {
        assert_eq!(
            kept(expression, &data, ""),
            ["redis1", "redis3"],
            "{expression}"
        );
    }
    assert_eq!(kept("Port != 1234", &data, ""), ["redis2"]);
    assert_eq!(kept("Weights.Passing == 1", &data, "").len(), 3);
    // Text that is not a number matches nothing, negated or not (Consul: 400).
    assert!(kept("Port == abc", &data, "").is_empty());
    assert!(kept("Port != abc", &data, "").is_empty());
    // Numbers are not substrings of numbers.
    assert!(kept("Port contains 12", &data, "").is_empty());
    assert!(kept("Port not contains 12", &data, "").is_empty());
    // A number literal against a string field is text.
    let item = json!({"Name": "1234", "Neg": -5, "F": 0.5, "Big": u64::MAX});
    assert!(filter("Name == 1234").matches(&item));
    assert!(!filter("Name == 1234.0").matches(&item));
    assert!(filter("Neg == -5").matches(&item));
    assert!(filter("F == 0.5").matches(&item));
    assert!(filter(r#"F == "5e-1""#).matches(&item));
    assert!(filter(r#"Big == "18446744073709551615""#).matches(&item));
    assert!(!filter(r#"Big == "18446744073709551614""#).matches(&item));
}

#[test]
fn booleans_use_go_parse_bool() {
    let data = health_service();
    for expression in [
        "Service.EnableTagOverride == true",
        "Service.EnableTagOverride == True",
        "Service.EnableTagOverride == T",
        "Service.EnableTagOverride == 1",
        r#"Service.EnableTagOverride == "TRUE""#,
        "Service.EnableTagOverride != false",
    ] {
        assert_eq!(
            kept(expression, &data, "Service.ID"),
            ["web2"],
            "{expression}"
        );
    }
    assert_eq!(
        kept("Service.EnableTagOverride == false", &data, "Service.ID"),
        ["web1", "web3"]
    );
    assert!(kept("Service.EnableTagOverride == yes", &data, "Service.ID").is_empty());
    assert!(kept("Service.EnableTagOverride != yes", &data, "Service.ID").is_empty());
}

#[test]
fn index_selectors_reach_keys_with_special_characters() {
    let data = health_service();
    assert_eq!(
        kept(r#"Service.Meta["my-key"] == yes"#, &data, "Service.ID"),
        ["web1"]
    );
    assert_eq!(
        kept(r#""my-key" in Service.Meta"#, &data, "Service.ID"),
        ["web1"]
    );
    assert_eq!(
        kept(r#"Service.Meta["my-key"] is empty"#, &data, "Service.ID"),
        ["web2", "web3"]
    );
    assert_eq!(
        kept("Service.Meta.version == `1.2.3`", &data, "Service.ID"),
        ["web1"]
    );
    // A bare selector-shaped value keeps its dots and digits.
    assert_eq!(
        kept("Service.Meta.version == v1.2.3", &data, "Service.ID"),
        Vec::<String>::new()
    );
    let item = json!({"Meta": {"v": "v1.2.3", "2": "two", "a b": "c"}});
    assert!(filter("Meta.v == v1.2.3").matches(&item));
    assert!(filter("Meta.2 == two").matches(&item));
    assert!(filter(r#"Meta["a b"] == c"#).matches(&item));
    assert!(filter(r#"Meta["a b"] == Meta.x"#).matches(&json!({"Meta": {"a b": "Meta.x"}})));
}

#[test]
fn selectors_through_lists_of_objects_are_any() {
    let data = health_service();
    assert_eq!(
        kept("Checks.Status == critical", &data, "Service.ID"),
        ["web2"]
    );
    assert_eq!(
        kept("Checks.Status == passing", &data, "Service.ID"),
        ["web1", "web2"]
    );
    // Per element, like bexpr: "some check is not passing".
    assert_eq!(
        kept("Checks.Status != passing", &data, "Service.ID"),
        ["web2"]
    );
    // "No check is critical" includes the entry without checks.
    assert_eq!(
        kept("not Checks.Status == critical", &data, "Service.ID"),
        ["web1", "web3"]
    );
    assert_eq!(
        kept("Checks.ServiceTags contains primary", &data, "Service.ID"),
        ["web1"]
    );
    assert_eq!(
        kept("primary in Checks.ServiceTags", &data, "Service.ID"),
        ["web1"]
    );
    assert_eq!(
        kept("Checks.CheckID matches `^service:`", &data, "Service.ID"),
        ["web1", "web2"]
    );
    assert_eq!(
        kept("Checks.ServiceTags is empty", &data, "Service.ID"),
        ["web1", "web2"]
    );
    // An empty list matches nothing, whatever the operator.
    for expression in [
        "Checks.Status is empty",
        "Checks.Status != x",
        "x not in Checks.ServiceTags",
    ] {
        assert!(
            !kept(expression, &data, "Service.ID").contains(&"web3".to_owned()),
            "{expression}"
        );
    }
}

#[test]
fn equality_and_matches_on_a_list_apply_to_its_elements() {
    let data = health_service();
    assert_eq!(
        kept("Service.Tags == primary", &data, "Service.ID"),
        ["web1"]
    );
    assert_eq!(
        kept("Service.Tags matches `^sec`", &data, "Service.ID"),
        ["web2"]
    );
    assert_eq!(
        kept("Service.Tags != primary", &data, "Service.ID"),
        ["web1", "web2"]
    );
}

#[test]
fn health_service_node_and_service_fields() {
    let data = health_service();
    assert_eq!(
        kept(r#"Node.Node == "node-2""#, &data, "Service.ID"),
        ["web2"]
    );
    assert_eq!(
        kept(
            "Node.Meta.instance_type == `t2.medium`",
            &data,
            "Service.ID"
        ),
        ["web1"]
    );
    assert_eq!(
        kept("lan in Node.TaggedAddresses", &data, "Service.ID"),
        ["web1"]
    );
    assert_eq!(
        kept("Node.TaggedAddresses is empty", &data, "Service.ID"),
        ["web2", "web3"]
    );
    assert_eq!(
        kept("Service.Weights.Passing == 10", &data, "Service.ID"),
        ["web1"]
    );
    assert_eq!(
        kept(
            "Service.Service == web and (Service.Port == 8081 or Service.Port == 8082)",
            &data,
            "Service.ID"
        ),
        ["web2", "web3"]
    );
}

#[test]
fn logic_precedence_and_grouping() {
    let item = json!({"A": "1", "B": "1", "C": "0"});
    // `A and not B or C` is `(A and (not B)) or C`.
    assert!(!filter("A == 1 and not B == 1 or C == 1").matches(&item));
    assert!(filter("A == 1 and not B == 0 or C == 1").matches(&item));
    assert!(filter("C == 1 or A == 1 and B == 1").matches(&item));
    assert!(!filter("(C == 1 or A == 1) and B == 0").matches(&item));
    assert!(filter("not not A == 1").matches(&item));
    assert!(!filter("not (A == 1)").matches(&item));
    assert!(filter("not (A == 1 and C == 1)").matches(&item));
    assert!(filter("((((A == 1))))").matches(&item));
    assert!(filter("A == 1 and B == 1 and C == 0 and not C == 1").matches(&item));
    assert!(filter("A==1 and\n\tB==1").matches(&item));
}

#[test]
fn keywords_are_lower_case_and_need_whitespace() {
    let item = json!({"notes": "", "Name": "orange", "not": "x", "in": "y"});
    assert!(filter("notes is empty").matches(&item));
    assert!(filter("Name == orange or Name == order").matches(&item));
    assert!(filter("Name == orange and Name != andy").matches(&item));
    // A field called `not` or `in` is still a selector where a keyword cannot be.
    assert!(filter("not == x").matches(&item));
    assert!(filter("in == y").matches(&item));
    for bad in [
        "Name == orange AND Name == orange",
        "Name == orange OR Name == orange",
        "NOT Name == orange",
        "Name IS EMPTY",
        "Name == orange and(Name == orange)",
        "not(Name == orange)",
        "Name contains\"x\"",
        "x in(Tags)",
    ] {
        error(bad);
    }
}

#[test]
fn regex_matches() {
    let data = agent_services();
    assert_eq!(
        kept("ID matches `^redis[12]$`", &data, ""),
        ["redis1", "redis2"]
    );
    assert_eq!(kept(r#"ID matches "3$""#, &data, ""), ["redis3"]);
    assert_eq!(
        kept(r#"ID not matches "3$""#, &data, ""),
        ["redis1", "redis2"]
    );
    assert_eq!(kept("Service matches edi", &data, "").len(), 3);
    assert_eq!(kept("Meta.env matches `(?i)^QA$`", &data, ""), ["redis3"]);
    assert_eq!(kept(r#"ID matches "redis\\d""#, &data, "").len(), 3);
    // Not applicable to numbers: false either way.
    assert!(kept("Port matches 1", &data, "").is_empty());
    assert!(kept("Port not matches 1", &data, "").is_empty());
}

#[test]
fn regex_engine_subset() {
    let cases: &[(&str, &str, bool)] = &[
        ("", "", true),
        ("", "abc", true),
        ("abc", "xxabcxx", true),
        ("abc", "ab", false),
        ("^abc", "xabc", false),
        ("abc$", "abcx", false),
        ("^$", "", true),
        ("a.c", "abc", true),
        ("a.c", "a\nc", false),
        ("(?s)a.c", "a\nc", true),
        ("a*", "", true),
        ("^a+$", "aaa", true),
        ("^a+$", "", false),
        ("^ab?c$", "ac", true),
        ("^ab?c$", "abbc", false),
        ("^a{2}$", "aa", true),
        ("^a{2}$", "aaa", false),
        ("^a{2,}$", "aaaa", true),
        ("^a{2,3}$", "aaaa", false),
        ("^a{0,1}b$", "b", true),
        ("^a{,2}$", "a{,2}", true),
        ("^x{$", "x{", true),
        ("^(ab)+$", "ababab", true),
        ("^(ab)+$", "ababa", false),
        ("^(?:a|bc)+$", "abca", true),
        ("^(?P<x>a|b)c$", "bc", true),
        ("^(?<x>a|b)c$", "ac", true),
        ("^(cat|dog|)$", "", true),
        ("cat|dog", "hotdog", true),
        ("^[a-c]+$", "abcab", true),
        ("^[a-c]+$", "abd", false),
        ("^[^a-c]+$", "xyz", true),
        ("^[^a-c]+$", "xaz", false),
        ("^[]a]+$", "]a]", true),
        ("^[a-]+$", "a-a", true),
        ("^[\\d.]+$", "1.2.3", true),
        ("^[[:alpha:]]+$", "abcXYZ", true),
        ("^[[:^digit:]]+$", "abc", true),
        ("^[[:^digit:]]+$", "ab1", false),
        ("^\\d+$", "12345", true),
        ("^\\D+$", "12a", false),
        ("^\\w+$", "ab_9", true),
        ("^\\W$", "-", true),
        ("^a\\sb$", "a\tb", true),
        ("^\\S+$", "a b", false),
        ("\\bfoo\\b", "a foo b", true),
        ("\\bfoo\\b", "afoob", false),
        ("\\Bfoo", "afoo", true),
        ("\\Afoo\\z", "foo", true),
        ("(?m)^b$", "a\nb\nc", true),
        ("^b$", "a\nb\nc", false),
        ("(?i)hello", "HeLLo world", true),
        ("(?i:h)ello", "Hello", true),
        ("(?i:h)ello", "HELLO", false),
        ("h(?i)ELLO", "hello", true),
        ("(?i)[a-c]+", "ABC", true),
        ("(?i)[^a]", "A", false),
        ("(?i-i)A", "a", false),
        ("^\\.\\*\\+$", ".*+", true),
        ("^\\x41\\x{42}\\103$", "ABC", true),
        ("^\\Q.*\\E$", ".*", true),
        ("^\\t\\n$", "\t\n", true),
        ("^é+$", "ééé", true),
        ("^.$", "é", true),
        ("a*?b", "aab", true),
        ("^(a*)*$", "aaaa", true),
        (
            "^(a|aa)*b$",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac",
            false,
        ),
        (
            "^(a+)+$",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
            false,
        ),
        ("^()*$", "", true),
        ("(?U)a+", "a", true),
    ];
    for (pattern, text, want) in cases {
        let re = match regex::Regex::new(pattern) {
            Ok(re) => re,
            Err(e) => panic!("{pattern:?}: {e}"),
        };
        assert_eq!(re.is_match(text), *want, "{pattern:?} on {text:?}");
    }
}

#[test]
fn regex_errors_are_parse_errors() {
    for pattern in [
        "(abc",
        "abc)",
        "a**",
        "a+*",
        "*a",
        "+",
        "{2}",
        "[a",
        "[z-a]",
        "x{1001}",
        "x{3,2}",
        "\\1",
        "\\q",
        "\\",
        "\\pL",
        "\\p{Greek}",
        "(?x)a",
        "(?P<>a)",
        "(?",
        "[[:nope:]]",
        "[a-\\d]",
        "(?i",
        "(?-)",
    ] {
        assert!(
            regex::Regex::new(pattern).is_err(),
            "{pattern:?} should not compile"
        );
        let e = error(&format!("Name matches `{pattern}`"));
        assert!(
            e.contains("Failed to compile regular expression"),
            "{pattern:?}: {e}"
        );
    }
    let e = error("Name matches `(abc`");
    assert_eq!(
        e,
        "Failed to create boolean expression evaluator: Failed to compile regular \
         expression \"(abc\": error parsing regexp: missing closing ): `(abc`"
    );
}

#[test]
fn regex_size_is_bounded() {
    assert!(regex::Regex::new("(((a{1000}){1000}){1000})").is_err());
    assert!(regex::Regex::new(&"(".repeat(200)).is_err());
    let re = regex::Regex::new("(x+x+)+y").expect("compiles");
    assert!(!re.is_match(&"x".repeat(5000)));
}

#[test]
fn string_literals_and_escapes() {
    let item = json!({"S": "a\tb", "U": "é", "R": "a\\nb", "Q": "say \"hi\"", "E": ""});
    assert!(filter(r#"S == "a\tb""#).matches(&item));
    assert!(filter(r#"S == "a\x09b""#).matches(&item));
    assert!(filter(r#"S == "a\011b""#).matches(&item));
    assert!(filter(r#"U == "\u00e9""#).matches(&item));
    assert!(filter(r#"U == "\U000000e9""#).matches(&item));
    assert!(filter(r#"U == "\xc3\xa9""#).matches(&item));
    assert!(filter("U == \"é\"").matches(&item));
    // Raw strings keep backslashes.
    assert!(filter(r"R == `a\nb`").matches(&item));
    assert!(filter("R == `a\\nb`").matches(&item));
    // Escaped quotes (an extension: bexpr rejects them).
    assert!(filter(r#"Q == "say \"hi\"""#).matches(&item));
    assert!(filter("Q == `say \"hi\"`").matches(&item));
    assert!(filter(r#"E == """#).matches(&item));
    assert!(filter("E == ``").matches(&item));
    // Carriage returns are dropped from raw strings, as Go does.
    assert!(filter("S == `a\t\rb`").matches(&item));
    for bad in [
        r#"S == "\q""#,
        r#"S == "\'""#,
        r#"S == "\x4""#,
        r#"S == "\400""#,
        r#"S == "\ud800""#,
        r#"S == "\xff""#,
        "S == \"a\nb\"",
    ] {
        let e = error(bad);
        assert!(e.contains("rule string"), "{bad:?}: {e}");
    }
}

#[test]
fn parse_errors_name_the_problem() {
    let cases: &[(&str, &str)] = &[
        (
            "(Name == web",
            "1:13 (12): rule grouping: Unmatched parentheses",
        ),
        (
            "Name == \"web",
            "1:13 (12): rule string: Unterminated string literal",
        ),
        (
            "Name == `web",
            "1:13 (12): rule string: Unterminated string literal",
        ),
        (
            "Port == 12ab",
            "1:11 (10): rule number: Invalid number literal",
        ),
        (
            "Port == 1.",
            "1:10 (9): rule number: Invalid number literal",
        ),
        (
            "Port == 01",
            "1:10 (9): rule number: Invalid number literal",
        ),
        ("web in \"Tags\"", "1:8 (7): rule match: Invalid selector"),
        ("Meta[env] == x", "1:6 (5): rule index: Invalid index"),
        (
            "Meta[\"env\" == x",
            "1:12 (11): rule index: Unclosed index expression",
        ),
    ];
    for (expression, want) in cases {
        assert_eq!(
            error(expression),
            format!("{ERROR_PREFIX}{want}"),
            "{expression}"
        );
    }
    let e = error("Name = web");
    assert!(
        e.starts_with(&format!(
            "{ERROR_PREFIX}1:6 (5): no match found, expected: "
        )),
        "{e}"
    );
    assert!(e.contains("\"==\""), "{e}");
    let e = error("Name == web and\nPort ==");
    assert!(e.contains("2:8 (23): no match found"), "{e}");
}

#[test]
fn bad_expressions_are_rejected() {
    for bad in [
        " ",
        "Name",
        "Name ==",
        "== web",
        "Name == web)",
        "Name == web and",
        "Name == web or or Name == x",
        "and Name == web",
        "not",
        "()",
        "Name is",
        "Name is not",
        "Name is emptyish",
        "Name isempty",
        "Name == web web",
        "1Name == web",
        "Name. == web",
        "Name.[\"x\"] == web",
        "Name == -",
        "Name == node-1",
        "Name == 'web'",
        "Name ~= web",
        "\"x\" == Name",
        "Name == \"/\"x",
        "Nam€ == x",
        "Name == w€b",
        "\"/Service/Name\" == web",
    ] {
        error(bad);
    }
}

#[test]
fn limits_on_size_and_nesting() {
    let long = format!("Name == \"{}\"", "x".repeat(MAX_EXPRESSION_BYTES));
    assert!(error(&long).contains("the limit is 4096"));

    let deep_ok = format!(
        "{}Name == x{}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert!(filter(&deep_ok).matches(&json!({"Name": "x"})));
    let too_deep = format!(
        "{}Name == x{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    assert!(error(&too_deep).contains("nests deeper than 32 levels"));
    let nots = format!("{}Name == x", "not ".repeat(MAX_NESTING + 1));
    assert!(error(&nots).contains("nests deeper"));
    let nots = format!("{}Name == x", "not ".repeat(MAX_NESTING));
    assert!(filter(&nots).matches(&json!({"Name": "x"})));
    let unbalanced = "(".repeat(MAX_EXPRESSION_BYTES);
    error(&unbalanced);

    // A long flat chain is fine: it is parsed iteratively.
    let mut chain = String::from("A == 1");
    while chain.len() + 16 < MAX_EXPRESSION_BYTES {
        chain.push_str(" and A == 1 or B == 2");
    }
    assert!(filter(&chain).matches(&json!({"A": "1"})));
}

#[test]
fn empty_expression_matches_everything() {
    let f = filter("");
    assert!(f.matches(&json!({})));
    assert_eq!(apply(&f, agent_services()), agent_services());
    assert_eq!(apply(&f, catalog_service()), catalog_service());
}

#[test]
fn apply_leaves_other_values_alone() {
    let f = filter("Name == x");
    assert_eq!(apply(&f, json!("text")), json!("text"));
    assert_eq!(apply(&f, json!(null)), json!(null));
    assert_eq!(apply(&f, json!([1, "x", null])), json!([]));
    assert_eq!(
        apply(&f, json!([{"Name": "x"}, {"Name": "y"}])),
        json!([{"Name": "x"}])
    );
}

#[test]
fn filters_compare_and_clone() {
    let a = filter("Name matches `^w` and web in Tags");
    assert_eq!(a, a.clone());
    assert_ne!(a, filter("Name matches `^x` and web in Tags"));
    assert_eq!(filter("not not Name == x"), filter("Name == x"));
}

#[test]
fn never_panics_on_arbitrary_input() {
    let pieces = [
        "Name", " ", "==", "!=", "\"", "`", "(", ")", "[", "]", ".", "and", "or", "not", "in",
        "is", "empty", "contains", "matches", "-", "1", "0.5", "é", "\\", "\n", "x", "Meta",
        "Checks", "Status", "\\u", "(?", "*", "{", "}", "$", "^", "|", ":",
    ];
    let data = health_service();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..4000 {
        let mut expression = String::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 12) as usize;
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            expression.push_str(pieces[(state % pieces.len() as u64) as usize]);
        }
        if let Ok(f) = Filter::parse(&expression) {
            let _ = apply(&f, data.clone());
        }
    }
    // Every prefix of some valid expressions.
    for full in [
        r#"Service.Meta["my-key"] == "a\tb" and not (Checks.Status matches `^(?i)pass` or x in Tags)"#,
        "Name == `é` or 1.5 not in Ports",
    ] {
        for (i, _) in full.char_indices() {
            let _ = Filter::parse(&full[..i]).map(|f| f.matches(&data[0]));
        }
    }
}

#[test]
fn empty_groups_repeated_cannot_hang_the_compiler() {
    // Without the compile budget these ran for hours (10^12 empty repetitions).
    for pattern in [
        r#"Node matches "((((){1000}){1000}){1000}){1000}""#,
        r#"Node matches "(((?:){1000}){1000}){1000}""#,
        r#"Node matches "(((x){0}){1000}){1000}""#,
    ] {
        let error = Filter::parse(pattern).err().unwrap_or_default();
        assert!(error.contains("expression too large"), "{pattern}: {error}");
    }
}

#[test]
fn selectors_outside_the_endpoint_are_refused() {
    let allowed = ["Node", "Meta", "Meta.*", "Checks.Status"];
    let check = |expression: &str| {
        Filter::parse(expression)
            .and_then(|f| f.check_selectors(&allowed))
            .err()
    };
    assert_eq!(
        check("Node == a and Meta.rack == r1 or Checks.Status != passing"),
        None
    );
    assert_eq!(check("not (Meta is empty)"), None);
    assert_eq!(
        check("Node == a and Nod == b").as_deref(),
        Some(r#"Failed to create boolean expression evaluator: Selector "Nod" is not valid"#)
    );
    assert!(check("Checks.Output == x").is_some());
    assert!(check("Meta.a.b == x").is_some());
}
