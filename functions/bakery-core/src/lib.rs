//! Bakery's domain, free of AWS SDK types: what starts a bake ([`classify`]), what a
//! pipeline's bake policy says ([`policy`]), and what Bakery publishes ([`publication`]).

pub mod bake;
pub mod classify;
pub mod distribution;
pub mod fanout;
pub mod grants;
pub mod ids;
pub mod imagebuilder;
pub mod policy;
pub mod publication;
pub mod replay;
pub mod retention;
pub mod steps;
pub mod trigger;

pub use classify::{classify, classify_value, ClassifyError};
pub use policy::{Policy, PolicyErrors};
pub use trigger::{BakeTrigger, Classification, Origin, SourceAmi};
