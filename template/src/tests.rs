//! Golden tests: consul-template's documented examples, rendered over Consul's answers (as
//! `/v1` gives them, decoded as the runner does) and compared byte for byte.

use super::*;

/// Answers as the runner would hold them: each query's `/v1` body, decoded.
fn answers(bodies: &[(Dep, &str)]) -> Arc<Answers> {
    Arc::new(
        bodies
            .iter()
            .map(|(dep, body)| {
                let status = if body.is_empty() { 404 } else { 200 };
                let value = dep.decode(status, body.as_bytes()).expect("decodes");
                (dep.clone(), value)
            })
            .collect(),
    )
}

const WEB: &str = r#"[
  {"Node":{"Node":"node1","Address":"10.0.0.1","Datacenter":"dc1","Meta":{"rack":"a"}},
   "Service":{"ID":"web1","Service":"web","Tags":["production","v2"],"Port":8080,"Address":"","Meta":{"version":"2"}},
   "Checks":[{"CheckID":"serfHealth","Status":"passing"}]},
  {"Node":{"Node":"node2","Address":"10.0.0.2","Datacenter":"dc1"},
   "Service":{"ID":"web2","Service":"web","Tags":["canary"],"Port":8081,"Address":"10.0.1.2"},
   "Checks":[{"CheckID":"serfHealth","Status":"passing"}]}
]"#;

fn web() -> Dep {
    Dep::service("web", None).expect("valid")
}

fn render(source: &str, answers: &Arc<Answers>) -> Rendered {
    Template::parse("in.ctmpl", source, None, "node1")
        .expect("parses")
        .render(answers)
        .expect("renders")
}

#[test]
fn nginx_upstream_from_the_load_balancing_tutorial() {
    let source = "upstream backend {\n{{- range service \"web\" }}\n  server {{ .Address }}:{{ .Port }};\n{{- end }}\n}\n";
    let out = render(source, &answers(&[(web(), WEB)]));
    assert!(out.complete());
    assert_eq!(
        out.text,
        "upstream backend {\n  server 10.0.0.1:8080;\n  server 10.0.1.2:8081;\n}\n"
    );
}

#[test]
fn a_template_waits_for_its_answers() {
    let source = "{{ range service \"web\" }}{{ .Address }}\n{{ end }}{{ key \"app/name\" }}";
    let out = render(source, &Arc::default());
    assert!(!out.complete());
    assert_eq!(out.missing.len(), 2);
    assert_eq!(out.used, out.missing);
    // The service answered, the key exists not: still waiting (as consul-template's `key`).
    let key = Dep::key("app/name").expect("valid");
    let out = render(source, &answers(&[(web(), WEB), (key.clone(), "")]));
    assert_eq!(
        out.missing.into_iter().collect::<Vec<_>>(),
        vec![key.clone()]
    );
    let out = render(
        source,
        &answers(&[
            (web(), WEB),
            (key, r#"[{"Key":"app/name","Value":"c2hvcA=="}]"#),
        ]),
    );
    assert!(out.complete());
    assert_eq!(out.text, "10.0.0.1\n10.0.1.2\nshop");
}

#[test]
fn by_tag_contains_and_in() {
    let source = r#"{{ range $tag, $services := service "web" | byTag }}{{ $tag }}:{{ range $services }} {{ .ID }}{{ end }}
{{ end }}{{ range service "web" }}{{ if .Tags | contains "production" }}prod {{ .ID }}
{{ end }}{{ if in .Tags "canary" }}canary {{ .ID }}
{{ end }}{{ end }}"#;
    let out = render(source, &answers(&[(web(), WEB)]));
    assert_eq!(
        out.text,
        "canary: web2\nproduction: web1\nv2: web1\nprod web1\ncanary web2\n"
    );
}

#[test]
fn services_nodes_and_a_node() {
    let services = Dep::Services { dc: None };
    let nodes = Dep::Nodes {
        dc: Some("dc2".to_owned()),
    };
    let node = Dep::node("node1").expect("valid");
    let source = r#"{{ range services }}{{ .Name }}: {{ .Tags | join "," }}
{{ end }}{{ range nodes "@dc2" }}{{ .Node }} {{ .Address }}
{{ end }}{{ with node }}{{ .Node.Node }}:{{ range .Services }} {{ .Service }}{{ end }}{{ end }}"#;
    let out = render(
        source,
        &answers(&[
            (services, r#"{"consul":[],"web":["v2","production"]}"#),
            (
                nodes,
                r#"[{"Node":"b","Address":"10.2.0.2"},{"Node":"a","Address":"10.2.0.1"}]"#,
            ),
            (
                node,
                r#"{"Node":{"Node":"node1","Address":"10.0.0.1"},"Services":{"web1":{"ID":"web1","Service":"web","Port":8080},"db":{"ID":"db","Service":"db"}}}"#,
            ),
        ]),
    );
    assert!(out.complete(), "{:?}", out.missing);
    assert_eq!(
        out.text,
        "consul: \nweb: production,v2\na 10.2.0.1\nb 10.2.0.2\nnode1: db web"
    );
}

#[test]
fn keys_trees_and_defaults() {
    let tree = Dep::prefix("service/redis", true).expect("valid");
    let ls = Dep::prefix("service/redis", false).expect("valid");
    let kv = r#"[
      {"Key":"service/redis/maxconns","Value":"MTU="},
      {"Key":"service/redis/minconns","Value":"NQ=="},
      {"Key":"service/redis/extra/flag","Value":"b24="}
    ]"#;
    let source = r#"{{ range tree "service/redis" }}{{ .Key }}:{{ .Value }}
{{ end }}--
{{ range ls "service/redis" }}{{ .Key }}
{{ end }}{{ keyOrDefault "service/redis/timeout" "5s" }} {{ keyExists "service/redis/timeout" }}"#;
    let timeout = Dep::key("service/redis/timeout").expect("valid");
    let out = render(source, &answers(&[(tree, kv), (ls, kv), (timeout, "")]));
    assert!(out.complete(), "{:?}", out.missing);
    assert_eq!(
        out.text,
        "maxconns:15\nminconns:5\nextra/flag:on\n--\nmaxconns\nminconns\n5s false"
    );
}

#[test]
fn helpers_as_consul_template_documents_them() {
    let cases = [
        ("{{ 2 | add 2 }}", "4"),
        ("{{ 7 | subtract 2 }}", "5"),
        ("{{ 2 | multiply 3 }}", "6"),
        ("{{ 10 | divide 2 }}", "5"),
        ("{{ 7 | modulo 2 }}", "1"),
        ("{{ 1.5 | add 1 }}", "2.5"),
        (r#"{{ "a,b,c" | split "," | join "-" }}"#, "a-b-c"),
        (
            r#"{{ "foo.bar" | regexReplaceAll "foo([.a-z]+)" "$1" }}"#,
            ".bar",
        ),
        (r#"{{ "foo.bar" | regexMatch "foo([.a-z]+)" }}"#, "true"),
        (r#"{{ "web-1" | replaceAll "web" "mail" }}"#, "mail-1"),
        (
            r#"{{ "Hello" | toLower }} {{ "hello" | toUpper }} {{ "hello world" | toTitle }}"#,
            "hello HELLO Hello World",
        ),
        (r#"{{ "  x  " | trimSpace }}"#, "x"),
        (r#"{{ "42" | parseInt | add 1 }}"#, "43"),
        (r#"{{ if "true" | parseBool }}yes{{ end }}"#, "yes"),
        (
            r#"{{ $j := "{\"b\":[1,2],\"a\":\"x\"}" | parseJSON }}{{ $j.a }} {{ index $j.b 1 }} {{ $j | toJSON }}"#,
            r#"x 2 {"a":"x","b":[1,2]}"#,
        ),
        (
            r#"{{ containsAny (split "," "a,z") (split "," "a,b") }} {{ containsAll (split "," "a,z") (split "," "a,b") }}"#,
            "true false",
        ),
        (
            r#"{{ with $x := 3 }}{{ if and (gt $x 2) (lt $x 5) }}{{ printf "%03d" $x }}{{ end }}{{ end }}"#,
            "003",
        ),
        (
            r#"{{ define "row" }}[{{ . }}]{{ end }}{{ range $i, $e := split "," "a,b" }}{{ $i }}{{ template "row" $e }}{{ else }}none{{ end }}"#,
            "0[a]1[b]",
        ),
        (
            r#"{{ if eq (len (split "," "a,b")) 3 }}3{{ else if eq 1 1 }}else-if{{ end }}"#,
            "else-if",
        ),
    ];
    for (source, want) in cases {
        let out = render(source, &Arc::default());
        assert_eq!(out.text, want, "{source}");
    }
    std::env::set_var("ISTHMUS_TEMPLATE_TEST", "from-env");
    assert_eq!(
        render(r#"{{ env "ISTHMUS_TEMPLATE_TEST" }}"#, &Arc::default()).text,
        "from-env"
    );
}

#[test]
fn errors_name_the_file_line_and_column() {
    let error = Template::parse(
        "lb.ctmpl",
        "upstream {\n  {{ range service \"web\" }\n}",
        None,
        "n",
    )
    .err()
    .expect("a parse error")
    .to_string();
    assert!(error.contains("lb.ctmpl:2:"), "{error}");
    let error = match Template::parse("lb.ctmpl", "{{ nosuchfunc }}", None, "n") {
        Err(e) => e.to_string(),
        Ok(t) => t
            .render(&Arc::default())
            .expect_err("an unknown function")
            .to_string(),
    };
    assert!(error.contains("nosuchfunc"), "{error}");
    let t = Template::parse("lb.ctmpl", "{{ service \"bad name\" }}", None, "n").expect("parses");
    let error = t
        .render(&Arc::default())
        .expect_err("a bad query")
        .to_string();
    assert!(
        error.contains("lb.ctmpl") && error.contains("invalid format"),
        "{error}"
    );
}

#[test]
fn other_delimiters() {
    let t = Template::parse(
        "d",
        "[[ range service \"web\" ]][[ .ID ]] [[ end ]]{{ not a tag }}",
        Some(("[[", "]]")),
        "n",
    )
    .expect("parses");
    let out = t.render(&answers(&[(web(), WEB)])).expect("renders");
    assert_eq!(out.text, "web1 web2 {{ not a tag }}");
}
