//! `dc-agent template` as consul-template, with a real nginx in front of services from the
//! catalog (the load-balancing tutorial): three `web` instances (small HTTP servers of this
//! test) registered with HTTP checks, an nginx upstream block rendered from `service "web"`
//! and `nginx -s reload` run on each change; requests through nginx reach all three; one
//! instance failing its check leaves the upstream block and nginx's rotation, with no
//! failed request meanwhile. Also: `-once -dry`, a `key` that does not exist yet holds the
//! file back, and a template error names the file, line and column (exit 14).
//!
//! Needs Debian's nginx (`scripts/test.sh` installs it) and root (nginx's workers).

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{wait_until, Cluster};

const SUBNET: u8 = 179;

/// A tiny HTTP server answering every request with its name, until dropped.
struct Web {
    stop: Arc<AtomicBool>,
    addr: String,
}

impl Web {
    fn start(name: &'static str, addr: &str) -> Web {
        let listener = TcpListener::bind(addr).expect("bind a web instance");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 2048];
                        let _ = stream.read(&mut buf);
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                            name.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener closes here: connections are refused from now on.
        });
        Web {
            stop,
            addr: addr.to_owned(),
        }
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A GET of `http://addr/` with a short timeout: the status and body, or an error.
fn get(addr: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {answer:?}"))?;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Ok((status, body))
}

/// nginx in a process group of its own: on drop its master is asked to stop (it stops
/// its workers), and the whole group is killed if it has not within 5 s, so no worker is
/// left holding the address.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let group = self.0.id() as i32;
        // SAFETY: signals the process group this test started.
        unsafe {
            libc::killpg(group, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn template_cli(http: &str, args: &[&str], log: &Path) -> Process {
    let log = std::fs::File::create(log).expect("log file");
    Process(
        Command::new(env!("CARGO_BIN_EXE_dc-agent"))
            .args(["-http-addr", http, "template"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start dc-agent template"),
    )
}

#[test]
fn nginx_follows_the_catalog_through_dc_agent_template() {
    let mut cluster = Cluster::start(SUBNET, 1);
    cluster.wait_for_leader();
    let http = cluster.agents[0].http();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    // Three web instances with HTTP checks every second.
    let names = ["web1", "web2", "web3"];
    let mut webs: Vec<Option<Web>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Some(Web::start(name, &format!("127.{SUBNET}.1.{}:8080", i + 1))))
        .collect();
    for (i, web) in webs.iter().enumerate() {
        let web = web.as_ref().expect("started");
        let body = format!(
            r#"{{"Name":"web","ID":"{}","Address":"127.{SUBNET}.1.{}","Port":8080,"Check":{{"HTTP":"http://{}/health","Interval":"1s"}}}}"#,
            names[i],
            i + 1,
            web.addr
        );
        let response = cluster.request(0, "PUT", "/v1/agent/service/register", body.as_bytes());
        assert_eq!(response.status, 200, "{}", response.text());
    }
    cluster.wait_for(
        "three passing web instances",
        Duration::from_secs(30),
        |c| {
            let response = c.agents[0]
                .client()
                .get("/v1/health/service/web?passing")
                .ok()?;
            let entries: Vec<serde_json::Value> = response.json().ok()?;
            (entries.len() == 3).then_some(())
        },
    );

    // The load-balancing tutorial's template.
    let lb = format!("127.{SUBNET}.0.50:8081");
    let template = d.join("load-balancer.conf.ctmpl");
    std::fs::write(
        &template,
        format!(
            "upstream backend {{\n{{{{- range service \"web\" }}}}\n  server {{{{ .Address }}}}:{{{{ .Port }}}};\n{{{{- end }}}}\n}}\n\nserver {{\n  listen {lb};\n  location / {{\n    proxy_pass http://backend;\n  }}\n}}\n"
        ),
    )
    .expect("write the template");
    let upstream = d.join("load-balancer.conf");
    let nginx_conf = d.join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        format!(
            "pid {dir}/nginx.pid;\nerror_log {dir}/error.log notice;\nevents {{}}\nhttp {{\n  access_log off;\n  include {dir}/load-balancer.conf;\n}}\n",
            dir = d.display()
        ),
    )
    .expect("write nginx.conf");

    // -once -dry prints the whole file and exits 0; it writes nothing.
    let spec = format!("{}:{}", template.display(), upstream.display());
    let (code, out, err) = support::cli(&http, &["template", "-once", "-dry", "-template", &spec]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("> {}\n", upstream.display())),
        "{out}"
    );
    for i in 1..=3 {
        assert!(
            out.contains(&format!("server 127.{SUBNET}.1.{i}:8080;")),
            "{out}"
        );
    }
    assert!(!upstream.exists());
    // -once writes it; nginx starts on it.
    let (code, _, err) = support::cli(&http, &["template", "-once", "-template", &spec]);
    assert_eq!(code, 0, "{err}");
    let nginx_bin = if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    let conf = nginx_conf.display().to_string();
    let mut nginx = Nginx(
        Command::new(nginx_bin)
            .args(["-c", &conf, "-g", "daemon off;"])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is missing (scripts/test.sh installs Debian's nginx)"),
    );
    wait_until("nginx to answer", Duration::from_secs(10), || {
        get(&lb).is_ok()
    });
    // Ours answers (not a stray nginx left on the address): it runs and wrote its pid.
    assert!(
        nginx.0.try_wait().expect("nginx status").is_none() && d.join("nginx.pid").exists(),
        "nginx did not start: {}",
        std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (status, body) = get(&lb).expect("nginx answers");
        assert_eq!(status, 200);
        seen.insert(body);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), names);

    // The runner keeps it current and reloads nginx on a change.
    let reload = format!("{nginx_bin} -c {conf} -s reload");
    let spec = format!("{}:{}:{reload}", template.display(), upstream.display());
    let runner_log = d.join("template.log");
    let _runner = template_cli(
        &http,
        &["-template", &spec, "-wait", "100ms:1s"],
        &runner_log,
    );
    // Requests keep flowing through nginx all along; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (failed, sent) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, failed, sent, lb) = (stop.clone(), failed.clone(), sent.clone(), lb.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                sent.fetch_add(1, Ordering::SeqCst);
                if !matches!(get(&lb), Ok((200, _))) {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    // web2 fails its check: it leaves the file, and nginx's rotation.
    let failed_at = Instant::now();
    webs[1] = None;
    let gone = format!("server 127.{SUBNET}.1.2:8080;");
    let out_of_file = wait_until(
        "web2 out of the upstream block",
        Duration::from_secs(30),
        || std::fs::read_to_string(&upstream).is_ok_and(|text| !text.contains(&gone)),
    );
    wait_until(
        "nginx to stop sending to web2",
        Duration::from_secs(10),
        || (0..12).all(|_| get(&lb).is_ok_and(|(_, body)| body != "web2")),
    );
    let out_of_rotation = failed_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load thread");
    let log = std::fs::read_to_string(&runner_log).unwrap_or_default();
    println!(
        "web2 stopped: out of the file after {out_of_file:?}, out of nginx's rotation after {out_of_rotation:?}; {} of {} requests through nginx failed meanwhile",
        failed.load(Ordering::SeqCst),
        sent.load(Ordering::SeqCst)
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during the change\n{log}"
    );
    assert!(log.contains("the command succeeded"), "{log}");
    // nginx took the new file (not only its own passive failure detection).
    let nginx_log = std::fs::read_to_string(d.join("error.log")).unwrap_or_default();
    assert!(nginx_log.contains("reconfiguring"), "{nginx_log}");
    let text = std::fs::read_to_string(&upstream).expect("rendered");
    assert!(
        text.contains(&format!("server 127.{SUBNET}.1.1:8080;"))
            && text.contains(&format!("server 127.{SUBNET}.1.3:8080;")),
        "{text}"
    );
}

#[test]
fn a_missing_key_holds_the_file_back_and_errors_name_their_place() {
    let mut cluster = Cluster::start(SUBNET + 1, 1);
    cluster.wait_for_leader();
    let http = cluster.agents[0].http();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let template = d.join("motd.ctmpl");
    std::fs::write(&template, "motd: {{ key \"app/motd\" }}\n").expect("write");
    let out = d.join("motd");
    let spec = format!("{}:{}", template.display(), out.display());
    let mut runner = template_cli(&http, &["-once", "-template", &spec], &d.join("once.log"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(!out.exists(), "written before the key existed");
    assert!(
        runner.0.try_wait().expect("wait").is_none(),
        "-once exited without its key"
    );
    let response = cluster.request(0, "PUT", "/v1/kv/app/motd", b"hello");
    assert_eq!(response.text(), "true");
    wait_until("the file", Duration::from_secs(20), || out.exists());
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "motd: hello\n"
    );
    let status = wait_until("-once to exit", Duration::from_secs(10), || {
        runner.0.try_wait().ok().flatten().is_some()
    });
    assert!(status < Duration::from_secs(10));

    // A template error: file, line and column; consul-template's exit code 14.
    std::fs::write(&template, "ok\n  {{ range service \"web\" }\n").expect("write");
    let (code, _, err) = support::cli(&http, &["template", "-once", "-template", &spec]);
    assert_eq!(code, 14, "{err}");
    assert!(err.contains(&format!("{}:2:", template.display())), "{err}");
    // A bad -wait is a command-line error (13).
    let (code, _, err) = support::cli(&http, &["template", "-wait", "soon", "-template", &spec]);
    assert_eq!(code, 13, "{err}");
}

#[test]
fn a_template_follows_another_datacenters_instances_through_the_gateways() {
    const FILE: &str = r#"
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.181.0.1" }]
gateways = [{ name = "gw1", address = "127.181.0.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.182.0.1" }]
gateways = [{ name = "gw1", address = "127.182.0.100" }]
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    support::render_topology(FILE, dir.path());
    let mut cluster = support::federation_nodes(
        dir,
        &[
            ("dc1", "s1", "127.181.0.1"),
            ("dc1", "gw1", "127.181.0.100"),
            ("dc2", "s1", "127.182.0.1"),
            ("dc2", "gw1", "127.182.0.100"),
        ],
    );
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0]);
    cluster.wait_for_leader_among(&[2]);
    // Two web instances in dc2 (catalog registrations: no agent runs them).
    for i in 1..=2 {
        let body = format!(
            r#"{{"Node":"web-node{i}","Address":"127.182.1.{i}","Service":{{"Service":"web","ID":"web{i}","Port":80}}}}"#
        );
        let response = cluster.request(2, "PUT", "/v1/catalog/register", body.as_bytes());
        assert_eq!(response.text(), "true");
    }
    let work = tempfile::tempdir().expect("tempdir");
    let template = work.path().join("dc2.ctmpl");
    std::fs::write(
        &template,
        "{{ range service \"web@dc2\" }}{{ .NodeDatacenter }} {{ .Address }}:{{ .Port }}\n{{ end }}",
    )
    .expect("write");
    let out = work.path().join("dc2.txt");
    let spec = format!("{}:{}", template.display(), out.display());
    // Asked of dc1's server: the answers come from dc2 through the gateways.
    let _runner = template_cli(
        &cluster.agents[0].http(),
        &["-template", &spec],
        &work.path().join("t.log"),
    );
    let want = "dc2 127.182.1.1:80\ndc2 127.182.1.2:80\n";
    cluster.wait_for(
        "dc2's instances in the file",
        Duration::from_secs(60),
        |_| (std::fs::read_to_string(&out).ok()? == want).then_some(()),
    );
    // One leaves dc2's catalog: the file follows.
    let changed = Instant::now();
    let response = cluster.request(
        2,
        "PUT",
        "/v1/catalog/deregister",
        br#"{"Node":"web-node1"}"#,
    );
    assert_eq!(response.text(), "true");
    cluster.wait_for("the file to follow dc2", Duration::from_secs(30), |_| {
        (std::fs::read_to_string(&out).ok()? == "dc2 127.182.1.2:80\n").then_some(())
    });
    println!(
        "a change in dc2 reached the file in dc1 after {:?}",
        changed.elapsed()
    );
}

#[test]
fn the_runner_outlives_its_agent_and_reloads_on_sighup() {
    let mut cluster = Cluster::start(SUBNET + 4, 1);
    cluster.wait_for_leader();
    let http = cluster.agents[0].http();
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/kv/app/color", b"blue")
            .text(),
        "true"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let template = work.path().join("color.ctmpl");
    std::fs::write(&template, "color={{ key \"app/color\" }}\n").expect("write");
    let out = work.path().join("color.conf");
    let spec = format!("{}:{}", template.display(), out.display());
    let log = work.path().join("runner.log");
    let runner = template_cli(&http, &["-template", &spec], &log);
    wait_until("the first render", Duration::from_secs(20), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t == "color=blue\n")
    });
    // The agent dies: the file stays whole; the runner retries until it is back.
    cluster.agents[0].kill();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(std::fs::read_to_string(&out).expect("kept"), "color=blue\n");
    cluster.agents[0].start();
    cluster.wait_for_leader();
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/kv/app/color", b"green")
            .text(),
        "true"
    );
    wait_until(
        "a render after the agent came back",
        Duration::from_secs(60),
        || std::fs::read_to_string(&out).is_ok_and(|t| t == "color=green\n"),
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("query failed"),
        "the runner noticed the agent was gone:\n{text}"
    );
    // SIGHUP: the template is read again.
    std::fs::write(&template, "colour={{ key \"app/color\" }}\n").expect("write");
    // SAFETY: signals a process this test started.
    unsafe {
        libc::kill(runner.0.id() as i32, libc::SIGHUP);
    }
    wait_until("the reloaded template", Duration::from_secs(20), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t == "colour=green\n")
    });
    // SIGTERM: consul-template's "interrupted" (12).
    let mut runner = runner;
    // SAFETY: as above.
    unsafe {
        libc::kill(runner.0.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = runner.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the runner did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(12));
}
