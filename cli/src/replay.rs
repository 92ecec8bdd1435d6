//! `bakery replay`: sends what waits in the trigger's dead-letter queue to the trigger again.
//! Every start the trigger makes is idempotent (deterministic execution names), so a replay
//! never starts a bake twice. A message is deleted only once the trigger has taken it.

use crate::invoke::InvokeError;
use std::fmt::Write as _;

pub async fn run(queue_url: &str, function: &str, max: usize) -> crate::Outcome {
    let sdk = crate::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let mut out = crate::Outcome {
        out: String::new(),
        problems: Vec::new(),
    };
    let mut done = 0;
    while done < max {
        let batch = match sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10.min((max - done) as i32).max(1))
            .visibility_timeout(300)
            .message_attribute_names("All")
            .send()
            .await
        {
            Ok(b) => b,
            Err(e) => {
                out.problems.push(format!(
                    "ReceiveMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ));
                break;
            }
        };
        let messages = batch.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            done += 1;
            let id = m.message_id().unwrap_or("?").to_owned();
            let payload = match bakery_core::replay::payload(m.body().unwrap_or_default()) {
                Ok(p) => p,
                Err(e) => {
                    out.problems
                        .push(format!("{id}: cannot replay: {e} (left on the queue)"));
                    continue;
                }
            };
            let result = crate::invoke::invoke(&lambda, function, &payload)
                .await
                .map_err(|e| match e {
                    InvokeError::Call(message) => message,
                    InvokeError::Function { body, .. } => format!("the trigger failed again: {body}"),
                });
            match result {
                Ok(v) => {
                    let _ = writeln!(
                        out.out,
                        "{id}: replayed: {} started, {} refused, {} skipped",
                        v["started"].as_array().map_or(0, Vec::len),
                        v["refused"].as_array().map_or(0, Vec::len),
                        v["skipped"].as_array().map_or(0, Vec::len),
                    );
                    if let Some(h) = m.receipt_handle() {
                        if let Err(e) = sqs.delete_message().queue_url(queue_url).receipt_handle(h).send().await {
                            out.problems.push(format!(
                                "{id}: replayed but not deleted: {}",
                                aws_sdk_sqs::error::DisplayErrorContext(&e)
                            ));
                        }
                    }
                }
                Err(e) => out.problems.push(format!("{id}: {e} (left on the queue)")),
            }
        }
    }
    if done == 0 {
        out.out.push_str("the dead-letter queue is empty\n");
    }
    out
}
