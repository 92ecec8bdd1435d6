//! Every scenario on the local AWS, in one test binary: each binary links the whole AWS SDK, so
//! one binary instead of six is minutes less linking and hundreds of megabytes less disk.
//! `cargo nextest run -p tests -E 'test(/^triggers::/)'` runs one module's tests.

mod accounts;
mod approval;
mod bake;
mod faults;
mod iam;
mod local_ec2;
mod local_imagebuilder;
mod local_lambda_events;
mod local_sns;
mod local_stepfunctions;
mod operate;
mod package;
mod retention;
mod revoke;
mod template;
mod triggers;
