//! The restJson1 wire: operations by method and path, request members from path, query and
//! body, responses, ids and dates.

use crate::error::ApiError;
use crate::Response;
use serde_json::{json, Map, Value};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) type Obj = Map<String, Value>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    CreateImagePipeline,
    GetImagePipeline,
    ListImagePipelines,
    UpdateImagePipeline,
    DeleteImagePipeline,
    CreateImageRecipe,
    GetImageRecipe,
    ListImageRecipes,
    CreateComponent,
    GetComponent,
    CreateInfrastructureConfiguration,
    GetInfrastructureConfiguration,
    CreateDistributionConfiguration,
    GetDistributionConfiguration,
    StartImagePipelineExecution,
    GetImage,
    ListImagePipelineImages,
    ListImageScanFindings,
    ListImageScanFindingAggregations,
    CancelImageCreation,
    TagResource,
    UntagResource,
    ListTagsForResource,
}

/// The model's `http` trait of each operation but the tag ones (`/tags/{resourceArn}`).
const ROUTES: &[(Op, &str, &str)] = &[
    (Op::CreateImagePipeline, "PUT", "/CreateImagePipeline"),
    (Op::GetImagePipeline, "GET", "/GetImagePipeline"),
    (Op::ListImagePipelines, "POST", "/ListImagePipelines"),
    (Op::UpdateImagePipeline, "PUT", "/UpdateImagePipeline"),
    (Op::DeleteImagePipeline, "DELETE", "/DeleteImagePipeline"),
    (Op::CreateImageRecipe, "PUT", "/CreateImageRecipe"),
    (Op::GetImageRecipe, "GET", "/GetImageRecipe"),
    (Op::ListImageRecipes, "POST", "/ListImageRecipes"),
    (Op::CreateComponent, "PUT", "/CreateComponent"),
    (Op::GetComponent, "GET", "/GetComponent"),
    (
        Op::CreateInfrastructureConfiguration,
        "PUT",
        "/CreateInfrastructureConfiguration",
    ),
    (
        Op::GetInfrastructureConfiguration,
        "GET",
        "/GetInfrastructureConfiguration",
    ),
    (
        Op::CreateDistributionConfiguration,
        "PUT",
        "/CreateDistributionConfiguration",
    ),
    (Op::GetDistributionConfiguration, "GET", "/GetDistributionConfiguration"),
    (Op::StartImagePipelineExecution, "PUT", "/StartImagePipelineExecution"),
    (Op::GetImage, "GET", "/GetImage"),
    (Op::ListImagePipelineImages, "POST", "/ListImagePipelineImages"),
    (Op::ListImageScanFindings, "POST", "/ListImageScanFindings"),
    (
        Op::ListImageScanFindingAggregations,
        "POST",
        "/ListImageScanFindingAggregations",
    ),
    (Op::CancelImageCreation, "PUT", "/CancelImageCreation"),
];

impl Op {
    /// Operations whose input has the model's idempotency token `clientToken` (required).
    pub(crate) fn takes_client_token(self) -> bool {
        matches!(
            self,
            Op::CreateImagePipeline
                | Op::UpdateImagePipeline
                | Op::CreateImageRecipe
                | Op::CreateComponent
                | Op::CreateInfrastructureConfiguration
                | Op::CreateDistributionConfiguration
                | Op::StartImagePipelineExecution
                | Op::CancelImageCreation
        )
    }

    /// The tag operations' outputs are the only ones without `requestId`.
    pub(crate) fn has_request_id(self) -> bool {
        !matches!(self, Op::TagResource | Op::UntagResource | Op::ListTagsForResource)
    }
}

/// The operation a request names, and the ARN in the path of the tag operations.
pub(crate) fn route(method: &str, path: &str) -> Result<(Op, Option<String>), ApiError> {
    let unknown = || ApiError::UnknownOperation(format!("No operation matches {method} {path}"));
    if let Some(arn) = path.strip_prefix("/tags/") {
        let op = match method {
            "POST" => Op::TagResource,
            "DELETE" => Op::UntagResource,
            "GET" => Op::ListTagsForResource,
            _ => return Err(unknown()),
        };
        // SDKs percent-encode the ARN's ':' and '/' in this path label.
        return Ok((op, Some(percent_decode(arn))));
    }
    ROUTES
        .iter()
        .find(|(_, m, p)| *m == method && *p == path)
        .map(|(op, ..)| (*op, None))
        .ok_or_else(unknown)
}

/// All input members of a request in one object: the JSON body, the query string members
/// (`tagKeys` is a list) and the path's `resourceArn`.
pub(crate) fn input(path_arn: Option<String>, query: &str, body: &[u8]) -> Result<Obj, ApiError> {
    let mut input = if body.iter().all(u8::is_ascii_whitespace) {
        Obj::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(Value::Object(members)) => members,
            Ok(_) => return Err(ApiError::Serialization("The request body must be a JSON object".into())),
            Err(e) => {
                return Err(ApiError::Serialization(format!(
                    "The request body is not valid JSON: {e}"
                )))
            }
        }
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (percent_decode(key), Value::String(percent_decode(value)));
        if key == "tagKeys" {
            if let Value::Array(keys) = input.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
                keys.push(value);
            }
        } else {
            input.insert(key, value);
        }
    }
    if let Some(arn) = path_arn {
        input.insert("resourceArn".into(), arn.into());
    }
    Ok(input)
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail.get(..2).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (
            b,
            hex.and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()),
        ) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                rest = &tail[2..];
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn respond(request_id: &str, result: Result<Value, ApiError>) -> Response {
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-amzn-RequestId".to_owned(), request_id.to_owned()),
    ];
    let (status, body) = match result {
        Ok(body) => (200, body),
        Err(e) => {
            // aws-sdk-rust reads the code from x-amzn-ErrorType, then the body's `code`/`__type`;
            // botocore reads the header and `__type`.
            headers.push(("x-amzn-ErrorType".to_owned(), e.code().to_owned()));
            (e.status(), json!({ "__type": e.code(), "message": e.to_string() }))
        }
    };
    Response {
        status,
        headers,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

pub(crate) fn with_request_id(mut response: Value, request_id: &str) -> Value {
    if let Value::Object(members) = &mut response {
        members.insert("requestId".into(), request_id.into());
    }
    response
}

/// A string member: absent (or null) is `None`, another JSON type is a serialization error.
pub(crate) fn opt_str<'a>(input: &'a Obj, key: &str) -> Result<Option<&'a str>, ApiError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::Serialization(format!("The member '{key}' must be a string"))),
    }
}

pub(crate) fn req_str<'a>(input: &'a Obj, key: &str) -> Result<&'a str, ApiError> {
    match opt_str(input, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::InvalidRequest(format!(
            "The required parameter '{key}' is missing."
        ))),
    }
}

/// A typed member, for the structures the emulator reads (filters, tags).
pub(crate) fn opt_typed<T: serde::de::DeserializeOwned>(input: &Obj, key: &str) -> Result<Option<T>, ApiError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| ApiError::Serialization(format!("The member '{key}' is malformed: {e}"))),
    }
}

/// An object from members, leaving out the null ones (optional members the resource lacks).
pub(crate) fn obj<const N: usize>(members: [(&str, Value); N]) -> Obj {
    members
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

fn random_u64() -> u64 {
    // std's RandomState is randomly keyed; the counter makes every call differ.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A random version-4 UUID, for request and event ids.
pub(crate) fn uuid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// The workspace's chrono has no `clock` feature; the system clock is enough.
pub(crate) fn utc_now() -> chrono::DateTime<chrono::Utc> {
    std::time::SystemTime::now().into()
}

/// The model's `DateTime` is a string; Image Builder sends ISO 8601 UTC with milliseconds.
pub(crate) fn now() -> String {
    utc_now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("arn%3Aaws%2Fx"), "arn:aws/x");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%+f%zz%4"), "%+f%zz%4");
        assert_eq!(percent_decode("a+b"), "a+b");
    }

    #[test]
    fn routes_follow_the_model() {
        assert!(matches!(route("GET", "/GetImage"), Ok((Op::GetImage, None))));
        assert!(matches!(route("POST", "/GetImage"), Err(ApiError::UnknownOperation(_))));
        let (op, arn) = route(
            "DELETE",
            "/tags/arn%3Aaws%3Aimagebuilder%3Aus-east-1%3A1%3Aimage%2Fa%2F1.0.0%2F1",
        )
        .expect("tag route");
        assert_eq!(op, Op::UntagResource);
        assert_eq!(arn.as_deref(), Some("arn:aws:imagebuilder:us-east-1:1:image/a/1.0.0/1"));
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, uuid());
    }
}
