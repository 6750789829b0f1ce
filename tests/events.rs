//! `GET /events` of `meshloop up` against a real API server: the events of a save, a broken
//! file, its fix and a drift arrive in the order they happen; a client that never reads is
//! dropped while the others and the engine go on.
//!
//! Waits are on real signals (the daemon's status channel, the stream itself); the timeouts
//! only bound a hang.

mod support;

use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use meshloop::engine::Status;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

const SUBSETS: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: goapp\nspec:\n  host: goapp\n  subsets:\n    - {name: v1, labels: {version: v1}}\n    - {name: v2, labels: {version: v2}}\n";

fn vs(weight: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\nspec:\n  hosts: [goapp.dev]\n  http:\n    - route:\n        - destination: {{host: goapp, subset: v1}}\n          weight: {weight}\n        - destination: {{host: goapp, subset: v2}}\n          weight: {}\n",
        100 - weight
    )
}

struct Running {
    dir: tempfile::TempDir,
    ns: support::TestNs,
    client: kube::Client,
    daemon: support::InProcess,
}

impl Running {
    /// A daemon over `routing/` whose verifications fail at once (there is no ingress
    /// Service here) and are not retried, so each one is exactly one event.
    async fn start(prefix: &str) -> Running {
        let tc = support::cluster();
        let client = support::client_for(tc).await;
        let ns = support::TestNs::new_in(tc, &client, prefix).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("routing")).unwrap();
        std::fs::write(dir.path().join("routing/goapp.yaml"), vs(90)).unwrap();
        std::fs::write(dir.path().join("routing/subsets.yaml"), SUBSETS).unwrap();
        std::fs::write(
            dir.path().join("meshloop.yaml"),
            format!(
                "instance: {0}\nnamespace: {0}\nsources:\n  - dir: routing\nverify: {{settle_ms: 0}}\n",
                ns.name
            ),
        )
        .unwrap();
        let daemon =
            support::InProcess::start(&dir.path().join("meshloop.yaml"), &tc.kubeconfig).await;
        let r = Running {
            dir,
            ns,
            client,
            daemon,
        };
        // The first sync and the verification it asks for are done before anyone listens.
        r.wait_status(|s| s.syncs >= 1 && s.verifications >= 1)
            .await;
        r
    }

    async fn wait_status(&self, cond: impl Fn(&Status) -> bool) -> Status {
        let mut rx = self.daemon.handles.status.clone();
        let got = tokio::time::timeout(WAIT, rx.wait_for(|s| cond(s)))
            .await
            .map(|r| r.map(|s| s.clone()));
        match got {
            Ok(Ok(s)) => s,
            _ => panic!(
                "timed out; status: {:#?}",
                *self.daemon.handles.status.borrow()
            ),
        }
    }

    async fn stop(self) {
        self.daemon.stop().await;
    }
}

/// One parsed Server-Sent Event.
#[derive(Debug)]
struct Sse {
    kind: String,
    id: u64,
    data: Value,
}

/// A client of `/events` that reads everything, parsed as it arrives.
struct Reader {
    body: http_body_util::combinators::BoxBody<bytes::Bytes, String>,
    buf: String,
}

impl Reader {
    async fn connect(addr: std::net::SocketAddr) -> Reader {
        let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let uri: http::Uri = format!("http://{addr}/events").parse().unwrap();
        let resp = client.get(uri).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Reader {
            body: resp.into_body().map_err(|e| e.to_string()).boxed(),
            buf: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped); `None` when the stream ended.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut kind, mut id, mut data) = (String::new(), 0, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().unwrap();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if kind.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).unwrap();
                return Some(Sse { kind, id, data });
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("an event within the deadline")?
                .unwrap();
            if let Ok(bytes) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        }
    }

    /// The next `n` events.
    async fn take(&mut self, n: usize) -> Vec<Sse> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.next().await.expect("the stream ended early"));
        }
        out
    }
}

fn kinds(events: &[Sse]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

#[tokio::test]
async fn events_of_a_save_a_broken_file_its_fix_and_a_drift_arrive_in_order() {
    let r = Running::start("events-order").await;
    let mut reader = Reader::connect(r.daemon.addr).await;
    let file = r.dir.path().join("routing/goapp.yaml");

    // A save: the sync that applied it, then the verification it asked for.
    std::fs::write(&file, vs(80)).unwrap();
    let save = reader.take(2).await;
    assert_eq!(kinds(&save), ["sync", "verification"], "{save:#?}");
    assert_eq!(save[0].data["trigger"], "files");
    assert_eq!(save[0].data["ok"], true);
    assert_eq!(save[0].data["counts"]["changed"], 1, "{:#?}", save[0].data);
    assert!(save[0].data["save_to_applied_ms"].as_f64().is_some());
    assert_eq!(save[1].data["ok"], false, "no ingress Service here");

    // A broken file: the findings change (a load error), then the failed sync; nothing to verify.
    std::fs::write(
        &file,
        "apiVersion: networking.istio.io/v1\nkind: [unclosed\n",
    )
    .unwrap();
    let broken = reader.take(2).await;
    assert_eq!(kinds(&broken), ["findings", "sync"], "{broken:#?}");
    let err = &broken[0].data["load_errors"][0];
    assert!(
        err["file"].as_str().unwrap().ends_with("goapp.yaml"),
        "{err}"
    );
    assert!(err["pos"]["line"].as_u64().unwrap() > 0, "{err}");
    assert_eq!(broken[1].data["ok"], false);

    // Fixed as it was: the load error goes (findings), the sync has nothing to write.
    std::fs::write(&file, vs(80)).unwrap();
    let fixed = reader.take(2).await;
    assert_eq!(kinds(&fixed), ["findings", "sync"], "{fixed:#?}");
    assert_eq!(fixed[0].data["load_errors"], json!([]));
    assert_eq!(fixed[1].data["counts"]["writes"], 0);

    // Someone edits the VirtualService: the drift, the sync that restored it, a verification.
    edit_in_cluster(&r).await;
    let drift = reader.take(3).await;
    assert_eq!(
        kinds(&drift),
        ["drift", "sync", "verification"],
        "{drift:#?}"
    );
    assert!(
        drift[0].data["object"]
            .as_str()
            .unwrap()
            .contains("VirtualService"),
        "{:#?}",
        drift[0].data
    );
    assert_eq!(drift[0].data["restored"], true);
    assert_eq!(drift[1].data["trigger"], "drift");

    let all: Vec<u64> = [save, broken, fixed, drift]
        .iter()
        .flatten()
        .map(|e| e.id)
        .collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ids rise: {all:?}");
    r.stop().await;
}

/// Someone else's edit of the VirtualService `goapp`: a 50/50 split.
async fn edit_in_cluster(r: &Running) {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "networking.istio.io",
        "v1",
        "VirtualService",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(r.client.clone(), &r.ns.name, &ar);
    let patch = json!({"spec": {"http": [{"route": [
        {"destination": {"host": "goapp", "subset": "v1"}, "weight": 50},
        {"destination": {"host": "goapp", "subset": "v2"}, "weight": 50}]}]}});
    api.patch("goapp", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// A client that sends its request and never reads is dropped once its connection stops
/// accepting bytes; a client that reads keeps every event, and the engine goes on syncing.
#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_the_others_go_on() {
    let r = Running::start("events-slow").await;
    let events = r.daemon.handles.events.clone();
    let mut reader = Reader::connect(r.daemon.addr).await;
    let mut stuck = tokio::net::TcpStream::connect(r.daemon.addr).await.unwrap();
    stuck
        .write_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // Its response head says it is subscribed; after that it reads nothing.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stuck.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(events.listeners(), 2);
    let deadline = tokio::time::Instant::now() + WAIT;

    // Large events, each published once the reading client has the one before: the stuck
    // client's socket and the server's buffer for it fill up, and then its writes stall.
    let payload = "x".repeat(256 * 1024);
    let mut published = 0u64;
    while events.listeners() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck client was not dropped after {published} events of 256 KiB"
        );
        events.publish(meshloop::events::Kind::Drift, &payload);
        published += 1;
        let got = reader.next().await.expect("the reading client stays");
        assert_eq!(got.data.as_str().map(str::len), Some(payload.len()));
    }
    eprintln!("the stuck client was dropped after {published} events of 256 KiB");

    // The engine never waited for it: a save still becomes a sync, and its event arrives.
    std::fs::write(r.dir.path().join("routing/goapp.yaml"), vs(70)).unwrap();
    let sync = loop {
        let e = reader.next().await.expect("the reading client stays");
        if e.kind == "sync" {
            break e;
        }
    };
    assert_eq!(sync.data["trigger"], "files");

    // The stuck client, reading at last, finds its connection closed by the server.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stuck.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the server did not close the stuck client's connection"
    );
    r.stop().await;
}
