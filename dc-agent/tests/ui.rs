//! The web UI in a real browser: Debian's chromium, driven through chromedriver's W3C
//! WebDriver protocol, against a live two-DC federation (dc1 on 127.186.0.0/24, dc2 on
//! 127.187.0.0/24, one server and one gateway each; `topology` renders servers with the UI
//! on). It opens `/ui/` and the deep links, switches to dc2 and sees `web` and its
//! instances, creates and edits a key (a stale edit is refused), watches an instance turn
//! critical without a reload, opens the federation view (both datacenters, their leaders, a
//! round trip) and sees the WAN link go down when dc2's gateway stops. Screenshots of each
//! view land in `docs/ui/` (the README shows them).
//!
//! Needs `chromium` and `chromium-driver` (`scripts/test.sh` installs them).

mod support;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::Cluster;

const FILE: &str = r#"
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.186.0.1" }]
gateways = [{ name = "gw1", address = "127.186.0.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.187.0.1" }]
gateways = [{ name = "gw1", address = "127.187.0.100" }]
"#;
const DC1: usize = 0;
const DC2: usize = 2;
const DC2_GW: usize = 3;
const UI: &str = "http://127.186.0.1:8500";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and one browser session; both stopped on drop.
struct Browser {
    agent: ureq::Agent,
    /// The agent whose UI it opens (`http://ADDR:8500`).
    origin: String,
    base: String,
    driver: Child,
    shots: PathBuf,
}

impl Browser {
    fn start(port: u16, origin: &str) -> Browser {
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is missing (scripts/test.sh installs chromium-driver)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut browser = Browser {
            agent,
            origin: origin.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            driver,
            shots: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/ui"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.raw("GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let session = browser.call(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,900"]
                }
            }}}),
        );
        let id = session["sessionId"].as_str().expect("a session").to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        };
        let mut response = response.map_err(|e| e.to_string())?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if response.status().as_u16() != 200 {
            return Err(value["value"]["message"].to_string());
        }
        Ok(value["value"].clone())
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        self.raw(method, path, Some(body))
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn goto(&self, path: &str) {
        self.call(
            "POST",
            "/url",
            json!({"url": format!("{}{path}", self.origin)}),
        );
    }

    fn path(&self) -> String {
        let url = self.call("GET", "/url", json!({}));
        url.as_str()
            .unwrap_or_default()
            .trim_start_matches(self.origin.as_str())
            .to_owned()
    }

    fn find(&self, css: &str) -> Option<String> {
        self.raw(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v[ELEMENT].as_str().map(str::to_owned))
    }

    fn text(&self, css: &str) -> Option<String> {
        let element = self.find(css)?;
        self.raw("GET", &format!("/element/{element}/text"), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// The `value` of a form field.
    fn value(&self, css: &str) -> Option<String> {
        let element = self.find(css)?;
        self.raw("GET", &format!("/element/{element}/property/value"), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// Waits until the element at `css` exists and its text passes `test`; returns it.
    fn wait_text(&self, what: &str, css: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(text) = self.text(css).filter(|t| test(t)) {
                return text;
            }
            if Instant::now() > deadline {
                let page = self
                    .raw(
                        "POST",
                        "/execute/sync",
                        Some(json!({"script": "return document.body.innerHTML;", "args": []})),
                    )
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                panic!(
                    "timed out waiting for {what} ({css}) on {}:\n{page}",
                    self.path()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let element = self
            .find(css)
            .unwrap_or_else(|| panic!("no {css} on {}", self.path()));
        self.call("POST", &format!("/element/{element}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self
            .find(css)
            .unwrap_or_else(|| panic!("no {css} on {}", self.path()));
        self.call("POST", &format!("/element/{element}/clear"), json!({}));
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({"text": text}),
        );
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Saves a screenshot as `docs/ui/NAME.png`.
    fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", json!({}));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a PNG");
        std::fs::create_dir_all(&self.shots).expect("docs/ui");
        let mut file = std::fs::File::create(self.shots.join(format!("{name}.png"))).expect("png");
        file.write_all(&bytes).expect("write png");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.raw("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn register(cluster: &Cluster, agent: usize, id: &str, address: &str, status: &str) {
    let body = json!({
        "Node": format!("{id}-node"), "Address": address,
        "Service": {"Service": "web", "ID": id, "Port": 80, "Tags": ["v1"]},
        "Check": {"CheckID": format!("{id}-alive"), "Name": "alive", "Status": status,
                  "ServiceID": id, "Output": format!("{id} is {status}")}
    });
    let response = cluster.request(
        agent,
        "PUT",
        "/v1/catalog/register",
        body.to_string().as_bytes(),
    );
    assert_eq!(response.text(), "true");
}

#[test]
fn the_web_ui_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    support::render_topology(FILE, dir.path());
    let mut cluster = support::federation_nodes(
        dir,
        &[
            ("dc1", "s1", "127.186.0.1"),
            ("dc1", "gw1", "127.186.0.100"),
            ("dc2", "s1", "127.187.0.1"),
            ("dc2", "gw1", "127.187.0.100"),
        ],
    );
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[DC1]);
    cluster.wait_for_leader_among(&[DC2]);
    cluster.wait_for("dc2 through the gateways", Duration::from_secs(60), |c| {
        let r = c.agents[DC1].client().get("/v1/kv/none?dc=dc2").ok()?;
        (r.status == 404).then_some(())
    });
    register(&cluster, DC2, "web1", "127.187.1.1", "passing");
    register(&cluster, DC2, "web2", "127.187.1.2", "passing");
    assert_eq!(
        cluster
            .request(DC1, "PUT", "/v1/kv/app/config", b"v1")
            .text(),
        "true"
    );

    let browser = Browser::start(9571, UI);
    // /ui/ lands on this datacenter's services.
    browser.goto("/ui/");
    browser.wait_text("the consul service", "tr[data-service=consul]", |t| {
        t.contains("consul")
    });
    assert_eq!(browser.path(), "/ui/dc1/services/");
    browser.screenshot("services");

    // Switch to dc2 with the datacenter picker: web is there, with its two instances.
    browser.click("#dc option[value=dc2]");
    browser.wait_text("web in dc2", "tr[data-service=web]", |t| {
        t.contains("passing")
    });
    assert_eq!(browser.path(), "/ui/dc2/services/");
    browser.click("tr[data-service=web] a");
    browser.wait_text("web2", "tr[data-instance=web2]", |t| {
        t.contains("127.187.1.2:80")
    });
    assert_eq!(browser.path(), "/ui/dc2/services/web");
    // The deep link gives the same view.
    browser.goto("/ui/dc2/services/web");
    browser.wait_text("web1", "tr[data-instance=web1]", |t| {
        t.contains("web1 is passing")
    });
    browser.screenshot("service");
    // An instance turns critical: the page follows without a reload.
    let marker = browser.script("window.__kept = 'same page'; return window.__kept;");
    assert_eq!(marker, "same page");
    register(&cluster, DC2, "web2", "127.187.1.2", "critical");
    browser.wait_text("web2 critical", "tr[data-instance=web2]", |t| {
        t.contains("web2 is critical")
    });
    assert_eq!(
        browser.script("return window.__kept || null;"),
        "same page",
        "the page was reloaded"
    );
    // The list follows health too, without a reload: web2 passes again, then fails.
    register(&cluster, DC2, "web2", "127.187.1.2", "passing");
    browser.goto("/ui/dc2/services/");
    browser.wait_text("web passing in the list", "tr[data-service=web]", |t| {
        t.contains("2 passing")
    });
    browser.script("window.__kept = 'list page'; return 1;");
    register(&cluster, DC2, "web2", "127.187.1.2", "critical");
    browser.wait_text("web critical in the list", "tr[data-service=web]", |t| {
        t.contains("critical")
    });
    assert_eq!(browser.script("return window.__kept || null;"), "list page");
    browser.screenshot("services-critical");
    browser.click("tr[data-service=web] a");
    browser.wait_text("web2", "tr[data-instance=web2]", |t| t.contains("critical"));
    browser.call("POST", "/back", json!({}));
    browser.wait_text("the list again", "tr[data-service=web]", |t| {
        t.contains("web")
    });
    assert_eq!(browser.path(), "/ui/dc2/services/");

    // Key/value, by deep link: browse, create, edit, and a stale edit refused.
    browser.goto("/ui/dc1/kv/app/");
    browser.wait_text("app/config", "tr[data-key='app/config']", |t| {
        t.contains("config")
    });
    browser.screenshot("kv");
    browser.type_into("#new-key", "greeting");
    browser.type_into("#new-value", "hello");
    browser.click("form.create button[type=submit]");
    browser.wait_text("the new key", "#kv-value", |t| t == "hello");
    assert_eq!(browser.path(), "/ui/dc1/kv/app/greeting");
    assert_eq!(
        cluster
            .request(DC1, "GET", "/v1/kv/app/greeting?raw", b"")
            .text(),
        "hello"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.value("#kv-editor").as_deref() != Some("hello") {
        assert!(
            Instant::now() < deadline,
            "the editor never showed the value"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.type_into("#kv-editor", "hello, edited");
    browser.click("#kv-save");
    browser.wait_text("saved", "#notice", |t| t.contains("Saved"));
    browser.wait_text("the edit shown", "#kv-value", |t| t == "hello, edited");
    assert_eq!(
        cluster
            .request(DC1, "GET", "/v1/kv/app/greeting?raw", b"")
            .text(),
        "hello, edited"
    );
    // Someone else writes; the edit started before it is refused.
    assert_eq!(
        cluster
            .request(DC1, "PUT", "/v1/kv/app/greeting", b"theirs")
            .text(),
        "true"
    );
    browser.wait_text("their value", "#kv-value", |t| t == "theirs");
    browser.type_into("#kv-editor", "mine, stale");
    browser.click("#kv-save");
    browser.wait_text("refused", "#notice", |t| {
        t.contains("changed by someone else")
    });
    assert_eq!(
        cluster
            .request(DC1, "GET", "/v1/kv/app/greeting?raw", b"")
            .text(),
        "theirs"
    );
    browser.screenshot("kv-key");

    // Nodes, reached from the keyboard: the Nodes link focused and Enter pressed.
    let link = browser
        .find("nav a[href='/ui/dc1/nodes/']")
        .expect("the Nodes link");
    browser.call(
        "POST",
        &format!("/element/{link}/value"),
        json!({"text": "\u{e007}"}),
    );
    browser.wait_text("s1", "tr[data-node=s1]", |t| t.contains("127.186.0.1"));
    assert_eq!(browser.path(), "/ui/dc1/nodes/");
    browser.screenshot("nodes");
    // A phone's width: the same view, readable.
    browser.call("POST", "/window/rect", json!({"width": 390, "height": 844}));
    browser.goto("/ui/dc2/services/web");
    browser.wait_text("web1 on a phone", "tr[data-instance=web1]", |t| {
        t.contains("web1")
    });
    let overflow =
        browser.script("return document.documentElement.scrollWidth <= window.innerWidth + 1;");
    assert_eq!(overflow, true, "the page is wider than a phone's screen");
    browser.screenshot("phone-service");
    browser.call(
        "POST",
        "/window/rect",
        json!({"width": 1280, "height": 900}),
    );

    // The federation: both datacenters, their leaders, a round trip between them.
    browser.goto("/ui/federation");
    browser.wait_text("dc1's leader", "tr[data-dc=dc1] .leader", |t| t == "s1");
    browser.wait_text("dc2's leader", "tr[data-dc=dc2] .leader", |t| t == "s1");
    browser.wait_text("dc1's leader health", "tr[data-dc=dc1]", |t| {
        t.contains("healthy")
            && t.contains("term ")
            && t.contains("no election since this page opened")
    });
    let rtt = browser.wait_text(
        "a round trip dc1 -> dc2",
        "#rtt-matrix tbody tr:first-child td[data-to=dc2]",
        |t| t.ends_with(" ms"),
    );
    println!("dc1 -> dc2 in the federation view: {rtt}");
    browser.wait_text(
        "dc1's gateway and its link to dc2",
        "#federation-gateways tr[data-dc=dc1]",
        |t| t.contains("gw1") && t.contains("up,") && t.contains("dc2") && t.ends_with(" ms"),
    );
    browser.screenshot("federation");
    // dc2's gateway stops: the link shows down within seconds.
    let stopped = Instant::now();
    cluster.agents[DC2_GW].kill();
    let api_down = cluster.wait_for(
        "dc1's API to report the link down",
        Duration::from_secs(60),
        |c| {
            let rows: Vec<Value> = c.agents[DC1]
                .client()
                .get("/v1/isthmus/datacenters")
                .ok()?
                .json()
                .ok()?;
            rows.iter()
                .any(|r| r["Datacenter"] == "dc2" && r["RTTMicros"].is_null())
                .then(|| stopped.elapsed())
        },
    );
    println!("dc1's /v1/isthmus/datacenters reported the link down {api_down:?} after dc2's gateway stopped");
    browser.wait_text(
        "the link down",
        "#rtt-matrix tbody tr:first-child td[data-to=dc2]",
        |t| t == "down",
    );
    println!(
        "the WAN link showed down {:?} after dc2's gateway stopped",
        stopped.elapsed()
    );
    browser.wait_text(
        "dc1's gateway's link to dc2 down",
        "#federation-gateways tr[data-dc=dc1]",
        |t| t.contains("dc2 down"),
    );
    browser.wait_text(
        "dc2's gateway down",
        "#federation-gateways tr[data-dc=dc2]",
        |t| t.contains("down") || t.contains("unreachable"),
    );
    browser.screenshot("federation-link-down");

    // Nothing was asked of anyone but the agent.
    let resources =
        browser.script("return performance.getEntriesByType('resource').map(e => e.name);");
    for url in resources.as_array().into_iter().flatten() {
        let url = url.as_str().unwrap_or_default();
        assert!(url.starts_with(UI), "a request outside the agent: {url}");
    }
}

#[test]
fn the_web_ui_asks_for_a_token_and_shows_what_it_may_read() {
    const ROOT: &str = "7f8a3c1e-0b2d-4e5f-9a6b-1c2d3e4f5a6b";
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = format!(
        r#"acl {{ enabled = true default_policy = "deny" tokens {{ initial_management = "{ROOT}" agent = "{ROOT}" }} }}"#
    );
    let agent = support::flag_agent::FlagAgent::server(
        dir.path(),
        "s1",
        "127.188.0.1",
        &["-bootstrap-expect=1", "-ui", "-hcl", &acl],
    );
    agent.wait_for_leader(Duration::from_secs(30));
    let root = agent.client().with_token(Some(ROOT.to_owned()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while root.get("/v1/acl/token/self").map(|r| r.status) != Ok(200) {
        assert!(
            Instant::now() < deadline,
            "the management token\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for key in ["public/motd", "secret/password"] {
        let r = root.put(&format!("/v1/kv/{key}"), b"v").expect("a write");
        assert_eq!(r.text(), "true");
    }
    let rules = "key_prefix \"public/\" { policy = \"read\" }\nagent_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }\nservice_prefix \"\" { policy = \"read\" }\n";
    let policy = json!({"Name": "ui-reader", "Rules": rules}).to_string();
    assert_eq!(
        root.put("/v1/acl/policy", policy.as_bytes())
            .expect("policy")
            .status,
        200
    );
    let token: Value = root
        .put("/v1/acl/token", br#"{"Policies":[{"Name":"ui-reader"}]}"#)
        .expect("token")
        .json()
        .expect("a token");
    let reader = token["SecretID"].as_str().expect("a secret").to_owned();

    let browser = Browser::start(9572, &format!("http://{}", agent.http()));
    browser.goto("/ui/");
    browser.wait_text("the request for a token", "main", |t| {
        t.contains("enter a token")
    });
    browser.wait_text("Consul's refusal", "#notice", |t| {
        t.contains("Permission denied")
    });
    // The token, then Enter: the UI starts, and shows only what the token may read.
    browser.type_into("#token", &format!("{reader}\u{e007}"));
    browser.wait_text("the services", "tr[data-service=consul]", |t| {
        t.contains("consul")
    });
    browser.goto("/ui/dc1/kv/");
    browser.wait_text("public/", "tr[data-key='public/']", |t| {
        t.contains("public")
    });
    assert!(
        browser.find("tr[data-key='secret/']").is_none(),
        "a key the token may not read is listed"
    );
    browser.screenshot("acl-kv");
    // A deep link to what it may not read: a clear refusal.
    browser.goto("/ui/dc1/kv/secret/password");
    browser.wait_text("the refusal", "#notice", |t| {
        t.contains("Permission denied")
    });
}
