//! The local API against slow, broken and oversized clients: header and request timeouts,
//! bounded shutdown (in process and through the binary with SIGTERM), HighLevel-shaped 413 and
//! 400 bodies, and the API token's whitespace.

use crate::kit::*;
use ghl_mirror::serve::{Timeouts, serve_with};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A served empty mirror with `timeouts`; the sender stops it, the handle is the serve future.
async fn served(
    timeouts: Timeouts,
) -> (
    Kit,
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ghl_mirror::serve::ServeError>>,
) {
    let k = kit(3).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(
        k.store.clone(),
        None,
        listener,
        async move {
            let _ = rx.await;
        },
        timeouts,
    ));
    (k, addr, tx, server)
}

fn timeouts(header_ms: u64, request_ms: u64, grace_ms: u64) -> Timeouts {
    Timeouts {
        header: Duration::from_millis(header_ms),
        request: Duration::from_millis(request_ms),
        grace: Duration::from_millis(grace_ms),
        ..Timeouts::default()
    }
}

/// Sends `head` and (from another task, ignoring errors: the server may stop reading) `body`,
/// and returns everything the server answers until it closes the connection (at most 10 s).
async fn exchange(addr: SocketAddr, head: String, body: Vec<u8>) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        wr
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    drop(writer);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code and JSON body of a raw HTTP/1.1 response.
fn parse(resp: &str) -> (u16, String, Value) {
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response in {resp:?}"));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    let json = body
        .find('{')
        .and_then(|start| {
            let end = body.rfind('}')?;
            serde_json::from_str(&body[start..=end]).ok()
        })
        .unwrap_or(Value::Null);
    (status, content_type, json)
}

#[tokio::test]
async fn a_client_sending_half_a_request_header_is_disconnected_after_the_header_timeout() {
    let (_k, addr, _stop, _server) = served(timeouts(300, 30_000, 3_000)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 10 s");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_a_highlevel_shaped_408_after_the_request_timeout() {
    let (_k, addr, _stop, _server) = served(timeouts(30_000, 300, 3_000)).await;
    let head = "POST /contacts/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 40\r\n\r\n{\"locationId\""
        .to_string();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let (status, content_type, body) = parse(&String::from_utf8_lossy(&buf[..n]));
    assert_eq!(status, 408);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(body["statusCode"], 408);
    assert_eq!(body["error"], "Request Timeout");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("serve.request_timeout"),
        "{body}"
    );
}

/// Sends a whole `GET path` on `s` and reads its answer (the server keeps the connection).
async fn get_on(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_client_past_max_connections_is_served_only_once_another_connection_closes() {
    let limits = Timeouts {
        max_connections: 2,
        ..timeouts(60_000, 60_000, 500)
    };
    let (_k, addr, _stop, _server) = served(limits).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(
        get_on(&mut first, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        get_on(&mut second, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // The third connects (the listen queue takes it) but is not served while two are open.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let waiting = tokio::spawn(async move {
        let answer = get_on(&mut third, "/health").await;
        (answer, third)
    });
    let mut waiting = waiting;
    // Nothing signals "not served": give it well past a loopback round trip.
    let early = tokio::time::timeout(Duration::from_millis(400), &mut waiting).await;
    assert!(
        early.is_err(),
        "a third connection was served past the limit of 2"
    );
    assert!(
        get_on(&mut first, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );
    drop(second);
    let (answer, _third) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the third connection was not served after another closed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_client_that_never_reads_its_large_responses_is_disconnected_after_the_request_timeout() {
    let k = kit(500).await;
    assert_success(&k.sync(&k.client(), &opts()).await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // One connection at a time: the next client is served only once the stalled one is closed.
    let limits = Timeouts {
        max_connections: 1,
        ..timeouts(60_000, 300, 500)
    };
    let _server = tokio::spawn(serve_with(
        k.store.clone(),
        None,
        listener,
        std::future::pending(),
        limits,
    ));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stalled = socket.connect(addr).await.unwrap();
    let (mut rd, mut wr) = stalled.into_split();
    // Pages of 500 contacts (about 90 MB in all), pipelined, and never read.
    let body = format!("{{\"locationId\":\"{LOC}\",\"pageLimit\":500}}");
    let request = format!(
        "POST /contacts/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let writer = tokio::spawn(async move {
        for _ in 0..200 {
            if wr.write_all(request.as_bytes()).await.is_err() {
                break;
            }
        }
        wr
    });
    let t = Instant::now();
    let mut next = TcpStream::connect(addr).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), get_on(&mut next, "/health")).await;
    assert!(
        answer.is_ok(),
        "the client that reads nothing still held its connection after 10 s"
    );
    assert!(answer.unwrap().starts_with("HTTP/1.1 200"));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    // And the stalled client finds its connection closed (what it had buffered aside).
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the stalled connection is still open");
    drop(writer);
}

#[tokio::test]
async fn shutdown_with_a_stalled_client_connected_ends_after_the_grace_period_with_success() {
    let (_k, addr, stop, server) = served(timeouts(60_000, 60_000, 500)).await;
    // One stalled client mid-header, one idle keep-alive connection after a full request.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /health HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let t = Instant::now();
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), server).await;
    let result = ended.expect("serve did not return within 5 s").unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    // The stalled client's connection was closed, and nothing listens any more.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stalled.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the stalled connection is still open");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_search_body_over_the_size_limit_gets_highlevels_413_as_json() {
    let (_k, addr, _stop, _server) = served(Timeouts::default()).await;
    let body = format!(
        "{{\"locationId\":\"{LOC}\",\"query\":\"{}\"}}",
        "x".repeat(3 << 20)
    )
    .into_bytes();
    let head = format!(
        "POST /contacts/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, content_type, json) = parse(&exchange(addr, head, body).await);
    assert_eq!(status, 413);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(
        json,
        serde_json::json!({
            "statusCode": 413,
            "message": "request entity too large",
            "error": "Payload Too Large",
        })
    );
}

#[tokio::test]
async fn a_broken_chunked_search_body_gets_a_highlevel_shaped_400() {
    let (_k, addr, _stop, _server) = served(Timeouts::default()).await;
    let head = "POST /contacts/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_string();
    let body = b"5\r\n{\"loc\r\nzz-not-a-chunk-size\r\n".to_vec();
    let (status, content_type, json) = parse(&exchange(addr, head, body).await);
    assert_eq!(status, 400);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(json["statusCode"], 400);
    assert_eq!(json["error"], "Bad Request");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("request body could not be read"),
        "{json}"
    );
}

/// `ghl-mirror serve` on a free port, with its stderr kept (lines arrive on the channel).
struct Process {
    child: std::process::Child,
    addr: SocketAddr,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_command(db: &std::path::Path, token: Option<&str>) -> std::process::Command {
    let mut c = crate::cli::bin();
    c.arg("--db")
        .arg(db)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("GHL_MIRROR_API_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(t) = token {
        c.env("GHL_MIRROR_API_TOKEN", t);
    }
    c
}

async fn start(db: &std::path::Path, token: Option<&str>) -> Process {
    use std::io::BufRead;
    let mut child = serve_command(db, token).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let banner = tokio::task::spawn_blocking({
        let rx_line = rx.recv_timeout(Duration::from_secs(30));
        move || rx_line
    })
    .await
    .unwrap()
    .expect("serve printed nothing");
    let addr = banner
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .parse()
        .unwrap();
    Process {
        child,
        addr,
        stderr: rx,
    }
}

async fn synced_db(k: &Kit) -> std::path::PathBuf {
    assert_success(&k.sync(&k.client(), &opts()).await);
    k.dir.path().join("mirror.db")
}

#[tokio::test]
async fn sigterm_stops_serve_with_a_stalled_client_in_under_five_seconds_and_exit_0() {
    let k = kit(5).await;
    let db = synced_db(&k).await;
    let mut p = start(&db, None).await;
    let mut stalled = TcpStream::connect(p.addr).await.unwrap();
    stalled
        .write_all(b"GET /contacts/ HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    // The connection is accepted and being read before the signal.
    let r = reqwest::get(format!("http://{}/health", p.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let pid = p.child.id().to_string();
    let t = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut child = std::mem::replace(
        &mut p.child,
        std::process::Command::new("true").spawn().unwrap(),
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(status.success(), "{status:?}");
    let said: Vec<String> = p.stderr.try_iter().collect();
    let said = said.join("\n");
    assert!(said.contains("requests in flight"), "{said}");
    assert!(!said.contains("cursor"), "{said}");
}

#[tokio::test]
async fn an_api_token_with_surrounding_whitespace_is_trimmed_and_clients_get_in() {
    let k = kit(5).await;
    let db = synced_db(&k).await;
    let id = k.sandbox.live_contact_ids(LOC)[0].clone();
    let p = start(&db, Some("  s3cret-token\n")).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/contacts/{id}", p.addr);
    let r = http
        .get(&url)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let r = http.get(&url).bearer_auth("other").send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_api_token_with_whitespace_inside_is_refused_at_start_naming_the_variable() {
    let k = kit(5).await;
    let db = synced_db(&k).await;
    let mut child = serve_command(&db, Some("s3cret token")).spawn().unwrap();
    let pid = child.id().to_string();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || {
            let status = child.wait().unwrap();
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            (status, err)
        }),
    )
    .await;
    if out.is_err() {
        let _ = std::process::Command::new("kill").arg(&pid).status();
        panic!("serve started with a token it should have refused");
    }
    let (status, err) = out.unwrap().unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("GHL_MIRROR_API_TOKEN") && err.contains("whitespace inside"),
        "{err}"
    );
}
