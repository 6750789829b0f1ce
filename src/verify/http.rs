//! The HTTP/1.1 client of the probes: plain HTTP to the ingress address with the Host header
//! of the route, connections kept alive and reused, a timeout per request.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::address::Address;
use super::probes::ProbeRequest;

/// At most this much of a body is kept (for expectations and reports).
const BODY_LIMIT: usize = 64 * 1024;

/// Response headers a report keeps.
const KEPT_HEADERS: &[&str] = &[
    "server",
    "location",
    "content-type",
    "x-envoy-upstream-service-time",
];

#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Lower-case names; the kept headers plus any the caller asked for.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub elapsed: Duration,
}

impl Answer {
    /// Envoy sets this on answers that came from an upstream; a 404 without it is the
    /// gateway's own "no route".
    pub fn from_upstream(&self) -> bool {
        self.headers.contains_key("x-envoy-upstream-service-time")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Refused(String),
    Timeout(u64),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(a) => write!(f, "connection refused by {a}"),
            Failure::Timeout(ms) => write!(f, "no answer within {ms} ms"),
            Failure::Other(e) => write!(f, "{e}"),
        }
    }
}

#[derive(Clone)]
pub struct Prober {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    /// Extra response headers to keep (the version header, expectations).
    keep: Vec<String>,
}

impl Prober {
    pub fn new(timeout: Duration, keep: Vec<String>) -> Prober {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build(conn);
        Prober {
            client,
            timeout,
            keep: keep.into_iter().map(|k| k.to_ascii_lowercase()).collect(),
        }
    }

    pub async fn send(&self, addr: &Address, req: &ProbeRequest) -> Result<Answer, Failure> {
        let start = Instant::now();
        let uri = format!("http://{}{}", addr.authority(), req.path);
        let mut b = http::Request::builder()
            .method(req.method.as_str())
            .uri(&uri)
            .header(http::header::HOST, &req.host)
            .header(http::header::USER_AGENT, "meshloop-verify");
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let body = req.body.clone().map(Bytes::from).unwrap_or_default();
        let request = b
            .body(Full::new(body))
            .map_err(|e| Failure::Other(format!("cannot build the request {uri}: {e}")))?;
        let ms = self.timeout.as_millis() as u64;
        let exchange = async {
            let resp = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    let text = format!("{e:?}");
                    if text.contains("ConnectionRefused") || text.contains("Connection refused") {
                        Failure::Refused(addr.authority())
                    } else {
                        Failure::Other(format!(
                            "cannot connect to {}: {}",
                            addr.authority(),
                            source_text(&e)
                        ))
                    }
                } else {
                    Failure::Other(format!(
                        "request to {} failed: {}",
                        addr.authority(),
                        source_text(&e)
                    ))
                }
            })?;
            let status = resp.status().as_u16();
            let mut headers = BTreeMap::new();
            for (k, v) in resp.headers() {
                let name = k.as_str();
                if KEPT_HEADERS.contains(&name) || self.keep.iter().any(|x| x == name) {
                    headers.insert(
                        name.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    );
                }
            }
            let body = match Limited::new(resp.into_body(), BODY_LIMIT).collect().await {
                Ok(c) => String::from_utf8_lossy(&c.to_bytes()).into_owned(),
                Err(_) => String::from("(body larger than 64 KiB or cut short)"),
            };
            Ok(Answer {
                status,
                headers,
                body,
                elapsed: start.elapsed(),
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout(ms)),
        }
    }
}

fn source_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
