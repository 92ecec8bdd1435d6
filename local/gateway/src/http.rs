//! Small HTTP helpers shared by the gateway's services.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::collections::BTreeMap;

pub type Body = Full<Bytes>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
}

pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, hyper::Error> {
    Ok(req.into_body().collect().await?.to_bytes())
}

pub fn json_response(status: u16, v: &serde_json::Value) -> Response<Body> {
    response(status, &[("Content-Type", "application/json")], v.to_string())
}

/// Every answer carries a request id: moto's Step Functions interpreter fails a Task
/// (States.Runtime, past any Retry or Catch) on an error response without one.
pub fn response(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Body> {
    let mut b = Response::builder()
        .status(status)
        .header("x-amzn-RequestId", uuid::Uuid::new_v4().to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full(body)).unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// An error as the restJson1 and awsJson protocols send it.
pub fn aws_json_error(status: u16, code: &str, message: &str) -> Response<Body> {
    response(
        status,
        &[("Content-Type", "application/json"), ("x-amzn-ErrorType", code)],
        serde_json::json!({"__type": code, "message": message, "Message": message}).to_string(),
    )
}

/// The parameters of a query-protocol request (form body, or the URL's query), decoded.
pub fn query_params(query: &str, body: &[u8]) -> BTreeMap<String, String> {
    let text = if query.contains("Action=") {
        query.to_owned()
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The contents of every `<tag>…</tag>` (not nested in one another) in `xml`.
pub fn xml_elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

pub fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
