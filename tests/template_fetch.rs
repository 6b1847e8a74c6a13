//! Template fetching under hostile servers and files: the redirect limit, conditional requests with one
//! validator, the environment's proxy (https only, never loopback), `file://` limited to regular files and the
//! size limit, and transport errors that keep their cause.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use stacksetd::template::{Fetched, Fetcher, Validators};
use stacksetd::template::{MAX_REDIRECTS, MAX_TEMPLATE_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEMPLATE: &str = r#"{"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}"#;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<HeaderMap>>>);

/// /t.json (with an ETag and a Last-Modified), /hop/N (redirects N times, then to /t.json).
async fn server() -> (String, Seen) {
    async fn template(State(seen): State<Seen>, headers: HeaderMap) -> Response {
        seen.0.lock().unwrap().push(headers);
        (
            [
                (header::ETAG, "\"v1\""),
                (header::LAST_MODIFIED, "Tue, 01 Dec 2026 00:00:00 GMT"),
            ],
            TEMPLATE,
        )
            .into_response()
    }
    async fn hop(Path(n): Path<u32>) -> Response {
        let to = if n <= 1 {
            "/t.json".to_string()
        } else {
            format!("/hop/{}", n - 1)
        };
        (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
    }
    let seen = Seen::default();
    let app = Router::new()
        .route("/t.json", get(template))
        .route("/hop/{n}", get(hop))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

fn error_text(result: Result<Fetched, stacksetd::Error>) -> String {
    match result {
        Ok(_) => panic!("the fetch must fail"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn exactly_the_documented_number_of_redirects_is_followed() {
    let (base, _) = server().await;
    let fetcher = Fetcher::with_proxy(TIMEOUT, None);
    let ok = fetcher.fetch(&format!("{base}/hop/{MAX_REDIRECTS}")).await;
    assert!(
        ok.is_ok(),
        "{MAX_REDIRECTS} redirects are followed: {:?}",
        ok.err()
    );
    let err = error_text(
        fetcher
            .fetch_if_changed(&format!("{base}/hop/{}", MAX_REDIRECTS + 1), None, None)
            .await,
    );
    assert!(
        err.contains(&format!("more than {MAX_REDIRECTS} redirects")),
        "{err}"
    );
}

#[tokio::test]
async fn a_conditional_request_sends_the_etag_alone_when_there_is_one() {
    let (base, seen) = server().await;
    let fetcher = Fetcher::with_proxy(TIMEOUT, None);
    let url = format!("{base}/t.json");
    let Fetched::New { validators, .. } = fetcher.fetch_if_changed(&url, None, None).await.unwrap()
    else {
        panic!("a first fetch is new");
    };
    assert_eq!(validators.etag.as_deref(), Some("\"v1\""));
    assert!(validators.last_modified.is_some());
    let _ = fetcher
        .fetch_if_changed(&url, Some(&validators), None)
        .await
        .unwrap();
    let only_date = Validators {
        etag: None,
        last_modified: validators.last_modified.clone(),
    };
    let _ = fetcher
        .fetch_if_changed(&url, Some(&only_date), None)
        .await
        .unwrap();
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].get(header::IF_NONE_MATCH).unwrap(), "\"v1\"");
    assert!(
        seen[1].get(header::IF_MODIFIED_SINCE).is_none(),
        "with an ETag known, If-Modified-Since is not sent (a server evaluating both misses a same-second change)"
    );
    assert!(
        seen[2].get(header::IF_MODIFIED_SINCE).is_some(),
        "without an ETag the date is the validator"
    );
}

/// A proxy that records the first line of every connection and answers 502.
async fn recording_proxy() -> (url::Url, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let n = stream.read(&mut buffer).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buffer[..n]).to_string();
                sink.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_string());
                let _ = stream
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (url, lines)
}

#[tokio::test]
async fn the_proxy_carries_https_and_never_loopback() {
    let (base, _) = server().await;
    let (proxy, lines) = recording_proxy().await;
    let fetcher = Fetcher::with_proxy(TIMEOUT, Some(proxy));
    fetcher
        .fetch(&format!("{base}/t.json"))
        .await
        .expect("loopback goes direct, not through the proxy");
    assert!(
        lines.lock().unwrap().is_empty(),
        "the proxy saw a loopback request: {:?}",
        lines.lock().unwrap()
    );
    let _ = fetcher.fetch("https://vendor.example/t.json").await;
    let seen = lines.lock().unwrap().clone();
    assert_eq!(
        seen,
        ["CONNECT vendor.example:443 HTTP/1.1"],
        "https goes through the proxy"
    );
}

#[tokio::test]
async fn file_urls_read_only_regular_files_and_only_up_to_the_limit() {
    let fetcher = Fetcher::with_proxy(TIMEOUT, None);
    let dir = tempfile::tempdir().unwrap();
    // A device and a FIFO would never end (or never start): refused at once.
    let fifo = dir.path().join("fifo.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    for path in [
        std::path::PathBuf::from("/dev/zero"),
        fifo,
        dir.path().to_path_buf(),
    ] {
        let started = Instant::now();
        let err = error_text(
            tokio::time::timeout(
                TIMEOUT,
                fetcher.fetch_if_changed(&format!("file://{}", path.display()), None, None),
            )
            .await
            .unwrap_or_else(|_| panic!("{} hung", path.display())),
        );
        assert!(
            err.contains("not a regular file"),
            "{}: {err}",
            path.display()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // A sparse 1 GB file: refused after reading one byte past the limit, not after reading it all.
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let started = Instant::now();
    let err = error_text(
        fetcher
            .fetch_if_changed(&format!("file://{}", huge.display()), None, None)
            .await,
    );
    assert!(err.contains(&MAX_TEMPLATE_BYTES.to_string()), "{err}");
    println!("1 GB file refused in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(2));
    // A symlink to a regular file (how Kubernetes mounts a ConfigMap) is read.
    let real = dir.path().join("real.json");
    std::fs::write(&real, TEMPLATE).unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    fetcher
        .fetch(&format!("file://{}", link.display()))
        .await
        .expect("a symlink to a regular file");
}

#[tokio::test]
async fn a_transport_error_keeps_its_cause() {
    let fetcher = Fetcher::with_proxy(TIMEOUT, None);
    // Port 1 on loopback: nothing listens, the connection is refused.
    let err = error_text(
        fetcher
            .fetch_if_changed("http://127.0.0.1:1/t.json", None, None)
            .await,
    );
    assert!(
        err.to_ascii_lowercase().contains("connection refused"),
        "the OS's reason is kept: {err}"
    );
    assert_eq!(
        err.matches("os error").count(),
        1,
        "the cause once, not twice: {err}"
    );
}
