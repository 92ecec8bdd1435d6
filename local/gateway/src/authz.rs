//! The gateway's front door: who signed a request (the SigV4 credential's access key and
//! region), what IAM must authorize for it, and AWS's answer when IAM refuses, in each
//! protocol's shape.

use crate::http::{aws_json_error, query_params, response, Body};
use crate::iam::requests::{self, Call, MapError};
use crate::iam::{Denied, Iam, Principal};
use hyper::Response;
use std::collections::BTreeMap;

/// The access key and region of a SigV4 `Authorization` header
/// (`Credential=<key>/<date>/<region>/<service>/aws4_request`), or of a presigned query.
pub fn credential(headers: &hyper::HeaderMap, query: &str) -> Option<(String, String)> {
    let scope = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or_default().to_owned())
        .or_else(|| query_params(query, b"").get("X-Amz-Credential").cloned())?;
    let mut parts = scope.split('/');
    let key = parts.next()?.to_owned();
    let region = parts.nth(1)?.to_owned();
    Some((key, region))
}

/// The request as IAM's mapping reads it.
pub fn call(
    service: &str,
    operation: &str,
    region: &str,
    account: &str,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Call {
    let query_string = parts.uri.query().unwrap_or_default();
    let url_query: BTreeMap<String, String> = query_string
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect();
    let json = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let form = if json.is_null() {
        query_params(query_string, body)
    } else {
        BTreeMap::new()
    };
    Call {
        service: service.to_owned(),
        operation: operation.to_owned(),
        region: region.to_owned(),
        account: account.to_owned(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: url_query,
        form,
        json,
    }
}

/// Authorizes one API request. `Err` is the answer to send instead of the service's.
pub async fn authorize(iam: &Iam, who: &Principal, call: &Call) -> Result<(), Response<Body>> {
    match requests::needs(call, &iam.data) {
        Ok(needs) => iam
            .authorize(who, &call.region, &needs)
            .await
            .map_err(|d| access_denied(&call.service, &d)),
        // An administrator may call what the local AWS cannot map (creating the tests' world).
        Err(MapError::Unmapped { .. }) if is_administrator(who) => Ok(()),
        Err(e @ MapError::Unmapped { .. }) => {
            let denied = Denied {
                action: requests::action_of(&call.service, &call.operation),
                resource: "*".into(),
                message: format!("User: {} is not authorized: {e}", who.arn),
            };
            tracing::warn!(function = who.function.as_deref().unwrap_or("-"), principal = %who.arn, "AccessDenied: {e}");
            Err(access_denied(&call.service, &denied))
        }
        Err(MapError::Invalid(message)) => Err(validation_error(&call.service, &message)),
    }
}

fn is_administrator(who: &Principal) -> bool {
    who.policies.iter().any(|(name, _)| name == "AdministratorAccess")
}

/// AWS's refusal in the protocol of `service`.
pub fn access_denied(service: &str, d: &Denied) -> Response<Body> {
    let id = uuid::Uuid::new_v4();
    match service {
        "ec2" => response(
            403,
            &[("Content-Type", "text/xml")],
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>UnauthorizedOperation</Code>\
                 <Message>You are not authorized to perform this operation. {}</Message></Error></Errors>\
                 <RequestID>{id}</RequestID></Response>",
                xml_escape(&d.message)
            ),
        ),
        "sns" | "sts" | "iam" => {
            let code = if service == "sns" {
                "AuthorizationError"
            } else {
                "AccessDenied"
            };
            response(
                403,
                &[("Content-Type", "text/xml")],
                format!(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error>\
                     <RequestId>{id}</RequestId></ErrorResponse>",
                    xml_escape(&d.message)
                ),
            )
        }
        "sqs" => aws_json_error(403, "AccessDenied", &d.message),
        "lambda" | "imagebuilder" => aws_json_error(403, "AccessDeniedException", &d.message),
        "dynamodb" => aws_json_error(
            400,
            "com.amazonaws.dynamodb.v20120810#AccessDeniedException",
            &d.message,
        ),
        _ => aws_json_error(400, "AccessDeniedException", &d.message),
    }
}

/// The request lacks what the service needs to name its resource.
fn validation_error(service: &str, message: &str) -> Response<Body> {
    match service {
        "ec2" => response(
            400,
            &[("Content-Type", "text/xml")],
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>MissingParameter</Code>\
                 <Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
                xml_escape(message),
                uuid::Uuid::new_v4()
            ),
        ),
        "sns" | "sts" | "iam" => response(
            400,
            &[("Content-Type", "text/xml")],
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code><Message>{}</Message></Error>\
                 <RequestId>{}</RequestId></ErrorResponse>",
                xml_escape(message),
                uuid::Uuid::new_v4()
            ),
        ),
        _ => aws_json_error(400, "ValidationException", message),
    }
}

/// The answer to credentials nobody issued.
pub fn unrecognized(service: &str, key: Option<&str>) -> Response<Body> {
    let message = match key {
        Some(k) => format!(
            "The security token included in the request is invalid (access key {k} was not issued by this local AWS)"
        ),
        None => "Request is missing Authentication Token".to_owned(),
    };
    match service {
        "ec2" | "sns" | "sts" | "iam" => response(
            401,
            &[("Content-Type", "text/xml")],
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>AuthFailure</Code><Message>{}</Message></Error>\
                 <RequestId>{}</RequestId></ErrorResponse>",
                xml_escape(&message),
                uuid::Uuid::new_v4()
            ),
        ),
        _ => aws_json_error(403, "UnrecognizedClientException", &message),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_the_signature() {
        let mut h = hyper::HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=ASIA0123/20261202/eu-west-1/ec2/aws4_request, SignedHeaders=host, Signature=x"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            credential(&h, ""),
            Some(("ASIA0123".to_owned(), "eu-west-1".to_owned()))
        );
        assert_eq!(credential(&hyper::HeaderMap::new(), ""), None);
    }

    #[test]
    fn refusals_in_each_protocol() {
        let d = Denied {
            action: "ec2:CopyImage".into(),
            resource: "arn:aws:ec2:eu-west-1::image/*".into(),
            message: "User: x is not authorized to perform: ec2:CopyImage on resource: arn:aws:ec2:eu-west-1::image/* because no identity-based policy allows the ec2:CopyImage action".into(),
        };
        let r = access_denied("ec2", &d);
        assert_eq!(r.status(), 403);
        let r = access_denied("ssm", &d);
        assert_eq!(r.headers()["x-amzn-ErrorType"], "AccessDeniedException");
    }
}
