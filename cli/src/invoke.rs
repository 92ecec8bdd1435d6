//! A Bakery function invoked by the command and answering at once (`bakery bake`, `stale`,
//! `revoke`, `replay`): the call, its JSON answer, and the function's own failure told apart.

use aws_sdk_lambda::primitives::Blob;
use serde_json::Value;

/// Why an invocation gave no answer.
#[derive(Debug)]
pub enum InvokeError {
    /// Lambda did not run the function: permissions, a wrong name, throttling, the network.
    Call(String),
    /// The function ran and failed (`X-Amz-Function-Error`): that error's kind and what it returned.
    Function { kind: String, body: Value },
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::Call(message) => f.write_str(message),
            InvokeError::Function { kind, body } => write!(f, "({kind}): {body}"),
        }
    }
}

/// Invokes `function` with `payload` and waits for its answer, decoded as JSON (null when it
/// returned none).
pub async fn invoke(lambda: &aws_sdk_lambda::Client, function: &str, payload: &Value) -> Result<Value, InvokeError> {
    let out = lambda
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
        .map_err(|e| {
            InvokeError::Call(format!(
                "Invoke {function}: {}",
                aws_sdk_lambda::error::DisplayErrorContext(&e)
            ))
        })?;
    let body = out
        .payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
        .unwrap_or(Value::Null);
    match out.function_error() {
        Some(kind) => Err(InvokeError::Function {
            kind: kind.to_owned(),
            body,
        }),
        None => Ok(body),
    }
}
