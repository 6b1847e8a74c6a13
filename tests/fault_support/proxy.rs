//! A fault-injecting HTTP/1.1 proxy between stacksetd and moto, on 127.0.0.1:0.
//!
//! Every request is read whole (head and Content-Length body), classified by the service in its SigV4 credential
//! scope and by its action (`Action=` of the query protocol for CloudFormation and STS, `X-Amz-Target` of JSON 1.1
//! for Organizations, the method for S3), and then, with probabilities drawn from an RNG seeded by the test's seed,
//! the request (service, action, body) and how many times that same request came before, so a request's fate does
//! not depend on what else is in flight or on the order concurrent requests arrive in, and a seed replays the same
//! faults on the same requests (the n-th resend of a request gets the n-th draw: a retry is not doomed to its
//! first fate):
//!
//! - dropped before forwarding (the connection closes without an answer; nothing reached moto);
//! - answered with AWS-shaped throttling (HTTP 400: `Throttling` in the query protocol's `<ErrorResponse>` XML,
//!   `TooManyRequestsException` as JSON 1.1 `__type` for Organizations) without reaching moto;
//! - answered with HTTP 500 or 503 `InternalFailure` (`ServiceException` for Organizations) without reaching moto;
//! - forwarded to moto and then dropped: moto applied the request but the answer is lost (the dangerous case for
//!   a mutating call, which has its own, usually higher, rate);
//! - forwarded, and its answer held back for a while (slow responses: a process killed meanwhile never sees it);
//! - forwarded untouched.
//!
//! Each exchange uses one upstream connection with `Connection: close`, and the answer to the client also closes
//! its connection, so every request is framed on its own. The proxy runs on its own thread and runtime, so test
//! code that blocks cannot stall it. Counts per service, action and fate are kept for the test to print;
//! `FAULT_PROXY_LOG=1` prints every request with its fate and time.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How long an upstream exchange may take before the proxy gives up on it (moto answers in milliseconds).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Probabilities (0.0..=1.0, per request) and the delay of slow answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// Close without an answer before forwarding.
    pub drop_before: f64,
    /// Answer with the service's throttling error.
    pub throttle: f64,
    /// Answer with HTTP 500/503 InternalFailure.
    pub server_error: f64,
    /// Forward, then close without the answer (read-only calls).
    pub drop_after: f64,
    /// Forward, then close without the answer, for calls that change something (CreateStackSet,
    /// UpdateStackSet, Create/Update/DeleteStackInstances, ...): applied, answer lost.
    pub drop_after_mutating: f64,
    /// Forward, then hold the answer back for a random time up to `slow_max`.
    pub slow: f64,
    pub slow_max: Duration,
    /// Forward a mutating call, then hold its answer back up to `slow_mutating_max` (a process killed meanwhile
    /// has changed AWS without knowing it).
    pub slow_mutating: f64,
    pub slow_mutating_max: Duration,
}

impl Rates {
    pub fn none() -> Rates {
        Rates::default()
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    Forwarded,
    Slowed,
    DroppedBefore,
    Throttled,
    ServerError,
    DroppedAfter,
    /// The upstream exchange failed (moto unreachable): answered 502.
    UpstreamFailed,
    /// Answered by the proxy with a canned answer (`FaultProxy::answer`), without reaching the emulator.
    Canned,
}

impl Fate {
    pub fn reached_moto(self) -> bool {
        matches!(self, Fate::Forwarded | Fate::Slowed | Fate::DroppedAfter)
    }
}

/// Actions that change AWS state.
pub fn is_mutating(action: &str) -> bool {
    matches!(
        action,
        "CreateStackSet"
            | "UpdateStackSet"
            | "DeleteStackSet"
            | "CreateStackInstances"
            | "UpdateStackInstances"
            | "DeleteStackInstances"
            | "DetectStackSetDrift"
            | "ActivateOrganizationsAccess"
            | "StopStackSetOperation"
    )
}

/// One forwarded mutating request, in the order moto received it.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub action: String,
    /// The OperationId (or ClientRequestToken) it carried, if any.
    pub operation_id: Option<String>,
    /// What it asks for: its parameters but the id, the API version, CallAs and the operation preferences, sorted
    /// (two requests with the same `change` do the same thing).
    pub change: String,
    pub fate: Fate,
}

#[derive(Debug, Default)]
struct Shared {
    rates: Rates,
    seed: u64,
    /// How many times each request (by its digest) has been seen: the index of its next draw.
    seen: BTreeMap<[u8; 8], u64>,
    counts: BTreeMap<(String, String, Fate), u64>,
    mutations: Vec<Mutation>,
    /// Requests still to be throttled whatever the rates say.
    forced_throttles: u32,
    /// Actions throttled on every request until cleared (a replica cut off: its heartbeats and a call it keeps
    /// retrying).
    throttled_actions: BTreeSet<String>,
    /// Requests of an action still to be applied with their answer dropped, whatever the rates say.
    forced_lost_answers: Option<(String, u32)>,
    /// Actions answered by the proxy itself (an answer AWS can give that no emulator does): action -> body.
    canned: BTreeMap<String, String>,
    /// Mutating requests the emulator has applied whose answer has not reached the client (yet, or ever).
    applied_unanswered: usize,
}

/// A running proxy; stops with the test process (its thread is detached).
pub struct FaultProxy {
    addr: SocketAddr,
    seed: u64,
    shared: Arc<Mutex<Shared>>,
    in_flight: Arc<AtomicUsize>,
    in_flight_mutating: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Listen on 127.0.0.1:0 and forward to `upstream` (moto's `127.0.0.1:PORT`).
    pub fn start(upstream: SocketAddr, seed: u64, rates: Rates) -> FaultProxy {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy forwards to loopback only"
        );
        let shared = Arc::new(Mutex::new(Shared {
            rates,
            seed,
            ..Shared::default()
        }));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let in_flight_mutating = Arc::new(AtomicUsize::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (state, busy, busy_mutating) = (
            shared.clone(),
            in_flight.clone(),
            in_flight_mutating.clone(),
        );
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind the proxy");
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let (state, busy, busy_mutating) =
                            (state.clone(), busy.clone(), busy_mutating.clone());
                        tokio::spawn(async move {
                            busy.fetch_add(1, Ordering::SeqCst);
                            let _ = serve(client, upstream, &state, &busy_mutating).await;
                            busy.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                });
            })
            .expect("spawn the proxy thread");
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy listens");
        FaultProxy {
            addr,
            seed,
            shared,
            in_flight,
            in_flight_mutating,
        }
    }

    /// `http://127.0.0.1:PORT`: what AWS_ENDPOINT_URL points at.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn set_rates(&self, rates: Rates) {
        self.shared.lock().unwrap().rates = rates;
    }

    /// Answer every `action` request with HTTP 200 and this JSON 1.1 body (e.g. ListRoots with no root), or stop
    /// (`None`). Works the same in front of moto and fakecloud.
    pub fn answer(&self, action: &str, body: Option<&str>) {
        let mut s = self.shared.lock().unwrap();
        match body {
            Some(b) => s.canned.insert(action.to_string(), b.to_string()),
            None => s.canned.remove(action),
        };
    }

    /// Throttle the next `n` requests, whatever the rates.
    pub fn throttle_next(&self, n: u32) {
        self.shared.lock().unwrap().forced_throttles = n;
    }

    /// Throttle every request of these actions from now on (none: stop), whatever the rates.
    pub fn throttle_actions(&self, actions: &[&str]) {
        self.shared.lock().unwrap().throttled_actions =
            actions.iter().map(|a| a.to_string()).collect();
    }

    /// Forward the next `n` requests of `action` and drop their answers, whatever the rates: the lost-answer path
    /// is then exercised in every run, not only when the seeded draws happen to land on a mutating call.
    pub fn lose_next_answers_of(&self, action: &str, n: u32) {
        self.shared.lock().unwrap().forced_lost_answers = Some((action.to_string(), n));
    }

    /// Connections being served now (a request read or forwarded, an answer pending).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Mutating requests being served now (forwarded or about to be, their answer not yet delivered).
    pub fn in_flight_mutating(&self) -> usize {
        self.in_flight_mutating.load(Ordering::SeqCst)
    }

    /// Mutating requests the emulator has applied and whose answer the client has not received: a process killed
    /// now has changed AWS without knowing it.
    pub fn applied_unanswered(&self) -> usize {
        self.shared.lock().unwrap().applied_unanswered
    }

    /// Requests per fate, all services and actions.
    pub fn totals(&self) -> BTreeMap<Fate, u64> {
        let mut out = BTreeMap::new();
        for ((_, _, fate), n) in &self.shared.lock().unwrap().counts {
            *out.entry(*fate).or_insert(0) += n;
        }
        out
    }

    /// Requests per (service, action, fate).
    pub fn counts(&self) -> BTreeMap<(String, String, Fate), u64> {
        self.shared.lock().unwrap().counts.clone()
    }

    /// Mutating requests that reached moto, in order, with what became of their answer.
    pub fn mutations(&self) -> Vec<Mutation> {
        self.shared.lock().unwrap().mutations.clone()
    }

    /// A summary for the test output: totals per fate and every mutating request that was dropped or failed.
    pub fn report(&self) -> String {
        let counts = self.counts();
        let total: u64 = counts.values().sum();
        let mut text = format!(
            "fault proxy (seed {}): {total} requests; {:?}\n",
            self.seed,
            self.totals()
        );
        for ((service, action, fate), n) in &counts {
            if *fate != Fate::Forwarded && is_mutating(action) {
                text.push_str(&format!("  {service} {action}: {fate:?} x{n}\n"));
            }
        }
        text
    }
}

/// A request read from the client.
struct Request {
    head: String,
    body: Vec<u8>,
    service: String,
    action: String,
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    shared: &Mutex<Shared>,
    busy_mutating: &AtomicUsize,
) -> std::io::Result<()> {
    let request = read_request(&mut client).await?;
    if !is_mutating(&request.action) {
        return exchange(client, upstream, shared, request).await;
    }
    busy_mutating.fetch_add(1, Ordering::SeqCst);
    let result = exchange(client, upstream, shared, request).await;
    busy_mutating.fetch_sub(1, Ordering::SeqCst);
    result
}

async fn exchange(
    mut client: TcpStream,
    upstream: SocketAddr,
    shared: &Mutex<Shared>,
    request: Request,
) -> std::io::Result<()> {
    let canned = shared.lock().unwrap().canned.get(&request.action).cloned();
    if let Some(body) = canned {
        *shared
            .lock()
            .unwrap()
            .counts
            .entry((
                request.service.clone(),
                request.action.clone(),
                Fate::Canned,
            ))
            .or_insert(0) += 1;
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: canned\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(answer.as_bytes()).await?;
        client.shutdown().await?;
        return Ok(());
    }
    let (fate, delay) = decide(shared, &request);
    let record = |fate: Fate| {
        if std::env::var_os("FAULT_PROXY_LOG").is_some() {
            eprintln!(
                "fault proxy {:?}: {} {} -> {fate:?} {delay:?}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default(),
                request.service,
                request.action
            );
        }
        let mut s = shared.lock().unwrap();
        *s.counts
            .entry((request.service.clone(), request.action.clone(), fate))
            .or_insert(0) += 1;
        if fate.reached_moto() && is_mutating(&request.action) {
            s.mutations.push(Mutation {
                action: request.action.clone(),
                operation_id: operation_id(&request.body),
                change: change_of(&request.body),
                fate,
            });
        }
    };
    match fate {
        Fate::DroppedBefore => {
            record(fate);
            // Closing without an answer: the client sees the connection end mid-exchange.
            drop(client);
            return Ok(());
        }
        Fate::Throttled | Fate::ServerError => {
            record(fate);
            let answer = error_answer(&request, fate);
            client.write_all(&answer).await?;
            client.shutdown().await?;
            return Ok(());
        }
        _ => {}
    }
    let answer = match tokio::time::timeout(UPSTREAM_TIMEOUT, forward(upstream, &request)).await {
        Ok(Ok(answer)) => answer,
        _ => {
            record(Fate::UpstreamFailed);
            let body = "proxy: moto did not answer";
            let answer = format!(
                "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(answer.as_bytes()).await?;
            return Ok(());
        }
    };
    record(fate);
    let mutating = is_mutating(&request.action);
    if fate == Fate::DroppedAfter {
        drop(client);
        return Ok(());
    }
    if mutating {
        shared.lock().unwrap().applied_unanswered += 1;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let delivered = async {
        client.write_all(&answer).await?;
        client.shutdown().await
    }
    .await;
    if mutating {
        shared.lock().unwrap().applied_unanswered -= 1;
    }
    delivered
}

/// The fate of a request and, for a slow one, its delay: one draw per fault, in a fixed order, from an RNG seeded
/// by the test's seed, the request's digest and its occurrence number.
fn decide(shared: &Mutex<Shared>, request: &Request) -> (Fate, Duration) {
    let mut s = shared.lock().unwrap();
    if s.forced_throttles > 0 {
        s.forced_throttles -= 1;
        return (Fate::Throttled, Duration::ZERO);
    }
    if s.throttled_actions.contains(&request.action) {
        return (Fate::Throttled, Duration::ZERO);
    }
    if let Some((action, left)) = &mut s.forced_lost_answers
        && *action == request.action
        && *left > 0
    {
        *left -= 1;
        return (Fate::DroppedAfter, Duration::ZERO);
    }
    let (rates, seed) = (s.rates, s.seed);
    let digest = request_digest(request);
    let occurrence = s.seen.entry(digest).or_insert(0);
    let mut rng = StdRng::seed_from_u64(draw_seed(seed, digest, *occurrence));
    *occurrence += 1;
    drop(s);
    let mut hit = |p: f64| p > 0.0 && rng.random::<f64>() < p;
    if hit(rates.drop_before) {
        return (Fate::DroppedBefore, Duration::ZERO);
    }
    if hit(rates.throttle) {
        return (Fate::Throttled, Duration::ZERO);
    }
    if hit(rates.server_error) {
        return (Fate::ServerError, Duration::ZERO);
    }
    let drop_after = if is_mutating(&request.action) {
        rates.drop_after_mutating
    } else {
        rates.drop_after
    };
    if hit(drop_after) {
        return (Fate::DroppedAfter, Duration::ZERO);
    }
    let (slow, slow_max) = if is_mutating(&request.action) && rates.slow_mutating > 0.0 {
        (rates.slow_mutating, rates.slow_mutating_max)
    } else {
        (rates.slow, rates.slow_max)
    };
    if hit(slow) {
        let max = slow_max.as_millis().max(1) as u64;
        let delay = Duration::from_millis(rng.random_range(max / 4..=max));
        return (Fate::Slowed, delay);
    }
    (Fate::Forwarded, Duration::ZERO)
}

/// What identifies a request across runs: service, action and body (the signature and its date are in the head).
fn request_digest(request: &Request) -> [u8; 8] {
    let mut hasher = Sha256::new();
    let body = without_temp_names(&request.body);
    for part in [request.service.as_bytes(), request.action.as_bytes(), &body] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize()[..8].try_into().expect("8 bytes")
}

/// The body with every temporary directory's random name (`.tmpXXXXXX`, tempfile's) made the same, so a
/// seed draws the same faults for the same request on every run.
fn without_temp_names(body: &[u8]) -> Vec<u8> {
    const MARK: &[u8] = b".tmp";
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(MARK) {
            out.extend_from_slice(MARK);
            i += MARK.len();
            let mut n = 0;
            while n < 6 && i < body.len() && body[i].is_ascii_alphanumeric() {
                i += 1;
                n += 1;
            }
            out.extend_from_slice(b"XXXXXX");
            continue;
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

/// The seed of one draw: the test's seed, the request and its occurrence, mixed.
fn draw_seed(seed: u64, digest: [u8; 8], occurrence: u64) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(digest);
    hasher.update(occurrence.to_le_bytes());
    u64::from_le_bytes(hasher.finalize()[..8].try_into().expect("8 bytes"))
}

/// The error answer AWS would send for this service and fault.
fn error_answer(request: &Request, fate: Fate) -> Vec<u8> {
    let request_id = format!("fault-{:016x}", rand::random::<u64>());
    let (status, reason, code, message, json_type) = match fate {
        Fate::Throttled => (
            400,
            "Bad Request",
            "Throttling",
            "Rate exceeded",
            "TooManyRequestsException",
        ),
        _ if request.body.len() % 2 == 0 => (
            500,
            "Internal Server Error",
            "InternalFailure",
            "We encountered an internal error. Please try again.",
            "ServiceException",
        ),
        _ => (
            503,
            "Service Unavailable",
            "InternalFailure",
            "Service is unavailable. Please try again.",
            "ServiceException",
        ),
    };
    let (content_type, extra, body) = if request.service == "organizations" {
        (
            "application/x-amz-json-1.1",
            format!("x-amzn-ErrorType: {json_type}\r\n"),
            serde_json::json!({ "__type": json_type, "Message": message }).to_string(),
        )
    } else {
        let xmlns = match request.service.as_str() {
            "sts" => "https://sts.amazonaws.com/doc/2011-06-15/",
            _ => "http://cloudformation.amazonaws.com/doc/2010-05-15/",
        };
        let error_type = if status == 400 { "Sender" } else { "Receiver" };
        (
            "text/xml",
            String::new(),
            format!(
                "<ErrorResponse xmlns=\"{xmlns}\"><Error><Type>{error_type}</Type><Code>{code}</Code>\
                 <Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            ),
        )
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nx-amzn-RequestId: {request_id}\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Send the request to moto on a fresh connection and read the whole answer; the answer is returned re-framed
/// to close the client's connection after it.
async fn forward(upstream: SocketAddr, request: &Request) -> std::io::Result<Vec<u8>> {
    let mut moto = TcpStream::connect(upstream).await?;
    let head = with_connection_close(&request.head);
    moto.write_all(head.as_bytes()).await?;
    moto.write_all(&request.body).await?;
    let (head, rest) = read_head(&mut moto).await?;
    let mut body = rest;
    if let Some(length) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < length {
            let mut chunk = [0u8; 16 * 1024];
            let n = moto.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
    } else {
        // Chunked or close-delimited: with `Connection: close` upstream, the answer ends at EOF either way, and
        // the bytes (chunk framing included) go to the client as they are.
        moto.read_to_end(&mut body).await?;
    }
    let mut answer = with_connection_close(&head).into_bytes();
    answer.extend_from_slice(&body);
    Ok(answer)
}

async fn read_request(client: &mut TcpStream) -> std::io::Result<Request> {
    let (head, mut body) = read_head(client).await?;
    if header(&head, "transfer-encoding").is_some() {
        return Err(std::io::Error::other(
            "chunked requests are not supported by the fault proxy",
        ));
    }
    let length = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let service = header(&head, "authorization")
        .and_then(|auth| {
            // Credential=KEY/DATE/REGION/SERVICE/aws4_request
            let scope = auth.split("Credential=").nth(1)?;
            scope.split(['/', ',']).nth(3).map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string());
    let action = match header(&head, "x-amz-target") {
        Some(target) => target
            .rsplit_once('.')
            .map_or(target.clone(), |(_, a)| a.to_string()),
        None if service == "s3" => s3_action(&head),
        None => form_value(&body, "Action").unwrap_or_else(|| "unknown".to_string()),
    };
    Ok(Request {
        head,
        body,
        service,
        action,
    })
}

/// The S3 object action of a REST request, from its method (stacksetd only stages objects).
fn s3_action(head: &str) -> String {
    let method = head.split(' ').next().unwrap_or("");
    match method {
        "PUT" => "PutObject",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        "DELETE" => "DeleteObject",
        _ => "unknown",
    }
    .to_string()
}

/// Read until the blank line; returns the head (without the blank line) and whatever body bytes came with it.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let rest = buffer[end + 4..].to_vec();
            return Ok((head, rest));
        }
        if buffer.len() > MAX_HEAD {
            return Err(std::io::Error::other("head too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// A header's value (first occurrence, case-insensitive name).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// The head with any Connection/Keep-Alive header replaced by `Connection: close`, ending in the blank line.
fn with_connection_close(head: &str) -> String {
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line
            .split_once(':')
            .map(|(k, _)| k.trim().to_ascii_lowercase());
        if i > 0 && matches!(name.as_deref(), Some("connection" | "keep-alive")) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

/// A value of an `application/x-www-form-urlencoded` body (percent-decoded).
pub fn form_value(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    url::form_urlencoded::parse(text.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.to_string())
}

/// A query-protocol request's parameters without its id, API version, CallAs and operation preferences, sorted.
pub fn change_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes())
        .filter(|(k, _)| {
            !matches!(
                k.as_ref(),
                "OperationId" | "ClientRequestToken" | "Version" | "CallAs"
            ) && !k.starts_with("OperationPreferences")
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    params.sort();
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The OperationId (or CreateStackSet's ClientRequestToken) of a query-protocol request.
fn operation_id(body: &[u8]) -> Option<String> {
    form_value(body, "OperationId").or_else(|| form_value(body, "ClientRequestToken"))
}
