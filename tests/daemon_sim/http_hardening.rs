//! The HTTP listener under hostile clients: half-open connections, request bodies, /status without its token,
//! secrets in what /status shows.

use std::time::{Duration, Instant};

use stacksetd::http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

const HALF_OPEN: usize = 500;
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// One raw HTTP/1.1 exchange with extra header lines (each ending in \r\n) and a body.
async fn exchange(addr: &str, method: &str, path: &str, extra: &str, body: &str) -> Response {
    exchange_as(addr, addr, method, path, extra, body).await
}

/// `exchange` with the Host header of the caller's choosing.
async fn exchange_as(
    addr: &str,
    host: &str,
    method: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n{body}"
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Response {
        status: headers
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

/// The soft limit on open files: the test holds 500 sockets and the daemon in this process 500 more.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_neither_starve_the_probes_nor_the_loop_and_are_closed() {
    // The probe must fit under the cap (checked when the test compiles).
    const _: () = assert!(HALF_OPEN < MAX_CONNECTIONS);
    let limit = open_files_limit();
    assert!(
        limit >= 1200,
        "this test needs `ulimit -n` of at least 1200 (it is {limit})"
    );
    let daemon = Setup::new(deployment_yaml("aimably", "Aimably", "v0", REGION))
        .start()
        .await;
    daemon.converged("aimably").await;

    // Half send an unfinished request head, half send nothing at all (slowloris and idle sockets).
    let mut held = Vec::with_capacity(HALF_OPEN);
    for i in 0..HALF_OPEN {
        let mut stream = TcpStream::connect(&daemon.addr).await.expect("connect");
        if i % 2 == 0 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .expect("send");
        }
        held.push(stream);
    }
    let asked = Instant::now();
    let health = get(&daemon.addr, "/healthz").await;
    let took = asked.elapsed();
    println!("/healthz with {HALF_OPEN} half-open connections held: {took:?}");
    assert_eq!(health.status, 200);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");

    // The loop still reconciles: an edit reaches the stack set.
    let yaml = deployment_yaml("aimably", "Aimably", "v1", REGION);
    save(&daemon.path, &yaml, Save::AtomicRename);
    eventually(
        WAIT,
        "the edit applied while the connections are held",
        || async {
            let set = daemon.sim.stack_set("Aimably")?;
            (set.settings.description.as_deref() == Some("v1")).then_some(())
        },
    )
    .await;

    // And the server lets none of them linger past the header-read timeout.
    let deadline = HEADER_READ_TIMEOUT + Duration::from_secs(5);
    let started = Instant::now();
    let mut closed = 0;
    for stream in &mut held {
        let left = deadline
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        let mut byte = [0u8; 512];
        match tokio::time::timeout(left, stream.read(&mut byte)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => {}
        }
    }
    println!("closed by the server within {deadline:?}: {closed}/{HALF_OPEN}");
    assert_eq!(
        closed, HALF_OPEN,
        "every half-open connection is closed within {deadline:?}"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_a_body_are_refused() {
    let daemon = Setup::new(deployment_yaml("aimably", "Aimably", "v0", REGION))
        .start()
        .await;
    for path in ["/healthz", "/status", "/metrics"] {
        let r = exchange(&daemon.addr, "GET", path, "Content-Length: 5\r\n", "hello").await;
        assert_eq!(r.status, 413, "GET {path} with a body: {}", r.headers);
        let r = exchange(
            &daemon.addr,
            "GET",
            path,
            "Transfer-Encoding: chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(r.status, 413, "GET {path} chunked: {}", r.headers);
    }
    assert_eq!(
        exchange(&daemon.addr, "GET", "/healthz", "Content-Length: 0\r\n", "")
            .await
            .status,
        200
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_needs_the_token_when_one_is_set_and_the_probes_do_not() {
    let mut setup = Setup::new(deployment_yaml("aimably", "Aimably", "v0", REGION));
    setup.status_token = Some(TOKEN.into());
    let daemon = setup.start().await;
    for path in ["/healthz", "/metrics"] {
        assert_eq!(
            get(&daemon.addr, path).await.status,
            200,
            "{path} stays open"
        );
    }
    // The page (GET /) shows what /status shows, under the same rule.
    for path in ["/status", "/"] {
        let r = get(&daemon.addr, path).await;
        assert_eq!(r.status, 401, "{path}: no token");
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{path}: {}",
            r.headers
        );
        assert!(
            !r.body.contains("aimably"),
            "{path}: nothing of the status leaks: {}",
            r.body
        );
        for wrong in [
            "Bearer nope",
            &format!("Bearer {TOKEN}x"),
            &format!("Basic {TOKEN}"),
            &format!("bearer{TOKEN}"),
        ] {
            let r = exchange(
                &daemon.addr,
                "GET",
                path,
                &format!("Authorization: {wrong}\r\n"),
                "",
            )
            .await;
            assert_eq!(r.status, 401, "{path}: {wrong}");
        }
    }
    let page = exchange(
        &daemon.addr,
        "GET",
        "/",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
        "",
    )
    .await;
    assert_eq!(page.status, 200, "the page with the token");
    assert!(
        page.headers.to_ascii_lowercase().contains("text/html"),
        "{}",
        page.headers
    );
    let r = eventually(WAIT, "/status with the token, once loaded", || async {
        let r = exchange(
            &daemon.addr,
            "GET",
            "/status",
            &format!("Authorization: Bearer {TOKEN}\r\n"),
            "",
        )
        .await;
        (r.status == 200 && r.body.contains("aimably")).then_some(r)
    })
    .await;
    assert_eq!(r.status, 200);

    // In a browser: /?token= sets a session cookie (a digest, never the token) and sends the token out of the
    // address bar; the page and its refreshes of /status then need no header. A wrong token sets nothing.
    let wrong = get(&daemon.addr, "/?token=not-the-token-at-all").await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.headers.to_ascii_lowercase().contains("set-cookie"));
    let login = get(&daemon.addr, &format!("/?token={TOKEN}")).await;
    assert_eq!(login.status, 303, "{}", login.headers);
    let cookie = login
        .headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l["set-cookie:".len()..].trim().to_string())
        })
        .expect("a session cookie");
    let lower = cookie.to_ascii_lowercase();
    assert!(
        lower.contains("httponly") && lower.contains("samesite=strict") && !cookie.contains(TOKEN),
        "{cookie}"
    );
    assert!(
        login.headers.to_ascii_lowercase().contains("location: /\r")
            || login.headers.to_ascii_lowercase().ends_with("location: /"),
        "{}",
        login.headers
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    for path in ["/", "/status"] {
        let r = exchange(
            &daemon.addr,
            "GET",
            path,
            &format!("Cookie: {pair}\r\n"),
            "",
        )
        .await;
        assert_eq!(r.status, 200, "{path} with the session cookie");
        let forged = exchange(
            &daemon.addr,
            "GET",
            path,
            "Cookie: stacksetd_session=0000000000000000000000000000000000000000000000000000000000000000\r\n",
            "",
        )
        .await;
        assert_eq!(forged.status, 401, "{path} with a forged cookie");
    }
    daemon.shutdown().await;
}

/// DNS rebinding: a page of another site whose name resolves to the daemon's address sends its own name as Host.
/// Every endpoint refuses a Host that is not an IP literal, `localhost` or an allowed name; the probes and
/// scrapers, which use addresses, are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_another_host_is_refused() {
    let daemon = Setup::new(deployment_yaml("aimably", "Aimably", "v0", REGION))
        .start()
        .await;
    let port = daemon.addr.rsplit_once(':').unwrap().1.to_string();
    // The probes answer any Host: they show nothing, and a probe set up with a name must not fail.
    for path in ["/healthz", "/readyz"] {
        let r = exchange_as(&daemon.addr, "attacker.example", "GET", path, "", "").await;
        assert_ne!(r.status, 421, "{path}");
    }
    for path in ["/status", "/", "/metrics"] {
        for host in [
            format!("attacker.example:{port}"),
            "attacker.example".to_string(),
            format!("127.0.0.1.attacker.example:{port}"),
        ] {
            let r = exchange_as(&daemon.addr, &host, "GET", path, "", "").await;
            assert_eq!(r.status, 421, "{path} as {host}: {}", r.body);
            assert!(!r.body.contains("aimably"), "{path}: {}", r.body);
        }
        for host in [
            daemon.addr.clone(),
            format!("localhost:{port}"),
            format!("LOCALHOST.:{port}"),
            format!("[::1]:{port}"),
        ] {
            let r = exchange_as(&daemon.addr, &host, "GET", path, "", "").await;
            assert_ne!(r.status, 421, "{path} as {host}");
        }
    }
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_redacts_url_secrets_from_settings_and_errors() {
    // A template URL with userinfo and a signature in its query, on a loopback port nothing listens on: the
    // fetch fails, and both the URL and the error text reach /status.
    let url = "http://vendor-user:vendor-pass@127.0.0.1:9/t.json?X-Amz-Signature=sig-secret";
    let yaml = deployment_yaml("aimably", "Aimably", "v0", REGION)
        .replace(&crate::daemon_support::template_url(), url);
    assert!(yaml.contains(url));
    let daemon = Setup::new(yaml).start().await;
    let body = eventually(WAIT, "the failed fetch on /status", || async {
        let body = get(&daemon.addr, "/status").await.body;
        body.contains("127.0.0.1:9").then_some(body)
    })
    .await;
    for secret in ["vendor-pass", "vendor-user", "sig-secret"] {
        assert!(!body.contains(secret), "{secret} in /status: {body}");
    }
    // The page is built from the same redacted document.
    let page = get(&daemon.addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("127.0.0.1:9"), "the URL is on the page");
    for secret in ["vendor-pass", "vendor-user", "sig-secret"] {
        assert!(
            !page.body.contains(secret),
            "{secret} on the page: {}",
            page.body
        );
    }
    assert!(body.contains("(query redacted)"), "{body}");
    // The cause of the failure is kept: the connection was refused.
    assert!(
        body.to_ascii_lowercase().contains("refused"),
        "the error keeps its cause: {body}"
    );
    daemon.shutdown().await;
}
