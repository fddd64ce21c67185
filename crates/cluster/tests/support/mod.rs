//! A scripted API server behind kube's client (the tower-test pattern): each request is recorded
//! and answered from a queue of replies for its route, with bodies shaped like the real API
//! server's (fixtures under tests/fixtures). Watches stream events the test sends while they run.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub type ReplyBody = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl Exchange {
    pub fn route(&self) -> String {
        route_of(&self.method, &self.path, &self.query)
    }
}

fn route_of(method: &str, path: &str, query: &str) -> String {
    let watch = if query.split('&').any(|p| p == "watch=true") {
        " watch"
    } else {
        ""
    };
    format!("{method} {path}{watch}")
}

pub enum Reply {
    Json(StatusCode, Value),
    /// A watch response: one line per event sent, ends when the sender is dropped.
    Stream(mpsc::UnboundedReceiver<Value>),
}

#[derive(Default)]
struct Script {
    queues: HashMap<String, VecDeque<Reply>>,
    log: Vec<Exchange>,
    /// Watches with nothing scripted stay open (like an idle watch) until the test ends.
    idle: Vec<mpsc::UnboundedSender<Value>>,
}

#[derive(Clone)]
pub struct FakeApi {
    script: Arc<Mutex<Script>>,
}

/// A client talking to a new scripted API server.
pub fn fake_api() -> (Client, FakeApi) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<ReplyBody>>();
    let api = FakeApi {
        script: Arc::default(),
    };
    let script = api.script.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let exchange = Exchange {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let route = exchange.route();
            let reply = {
                let mut s = script.lock().unwrap();
                s.log.push(exchange);
                let next = s.queues.get_mut(&route).and_then(VecDeque::pop_front);
                match next {
                    Some(r) => r,
                    None if route.ends_with(" watch") => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        s.idle.push(tx);
                        Reply::Stream(rx)
                    }
                    None => Reply::Json(StatusCode::NOT_FOUND, not_found(&route)),
                }
            };
            send.send_response(respond(reply));
        }
    });
    (Client::new(service, "default"), api)
}

fn respond(reply: Reply) -> Response<ReplyBody> {
    match reply {
        Reply::Json(status, value) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&value).unwrap())).boxed_unsync())
            .unwrap(),
        Reply::Stream(rx) => {
            let lines = futures_util::stream::unfold(rx, |mut rx| async move {
                let event = rx.recv().await?;
                let mut line = serde_json::to_vec(&event).unwrap();
                line.push(b'\n');
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), rx))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(StreamBody::new(lines.boxed()).boxed_unsync())
                .unwrap()
        }
    }
}

fn not_found(route: &str) -> Value {
    status(404, "NotFound", &format!("nothing scripted for {route}"))
}

/// A `Status` object as the API server sends with an error.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

impl FakeApi {
    pub fn reply(&self, route: &str, reply: Reply) {
        self.script
            .lock()
            .unwrap()
            .queues
            .entry(route.to_string())
            .or_default()
            .push_back(reply);
    }

    pub fn json(&self, route: &str, value: Value) {
        self.reply(route, Reply::Json(StatusCode::OK, value));
    }

    /// Scripts a watch response and returns the sender of its events.
    pub fn watch(&self, route: &str) -> mpsc::UnboundedSender<Value> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.reply(route, Reply::Stream(rx));
        tx
    }

    pub fn log(&self) -> Vec<Exchange> {
        self.script.lock().unwrap().log.clone()
    }

    pub fn requests(&self, route: &str) -> Vec<Exchange> {
        self.log()
            .into_iter()
            .filter(|e| e.route() == route)
            .collect()
    }

    /// Waits until `route` has been requested `n` times.
    pub async fn wait_requests(&self, route: &str, n: usize) -> Vec<Exchange> {
        for _ in 0..200 {
            let seen = self.requests(route);
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{route} requested {} times, expected {n}; log: {:#?}",
            self.requests(route).len(),
            self.log()
        );
    }
}

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub const NODE: &str = "ip-192-168-12-34.us-west-2.compute.internal";
pub const NODES: &str = "GET /api/v1/nodes";
pub const ENICONFIGS: &str = "GET /apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs";

/// The NodeList the API server returns for `fieldSelector=metadata.name=NODE`.
pub fn node_list(node: &Value, resource_version: &str) -> Value {
    json!({
        "kind": "NodeList", "apiVersion": "v1",
        "metadata": {"resourceVersion": resource_version},
        "items": [node]
    })
}

pub fn with_resource_version(object: &Value, rv: &str) -> Value {
    let mut o = object.clone();
    o["metadata"]["resourceVersion"] = json!(rv);
    o
}

pub fn event(type_: &str, object: &Value) -> Value {
    json!({"type": type_, "object": object})
}

/// Waits until the watched objects satisfy `check`.
pub async fn wait_objects(
    rx: &mut cluster::ObjectsRx,
    what: &str,
    check: impl Fn(&eniconfig::Objects) -> bool,
) -> eniconfig::Objects {
    let found = {
        let waited = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|o| check(o))).await;
        match waited {
            Ok(Ok(o)) => Some((**o).clone()),
            _ => None,
        }
    };
    found.unwrap_or_else(|| panic!("objects never showed {what}; last: {:#?}", rx.borrow()))
}
