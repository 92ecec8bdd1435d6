//! Raw bytes into the classifier: it must answer (bake, ignore or a typed error), never panic.
//! A bake's trigger then goes through the fan-out rules against the example policies, and the
//! same bytes, read as a dead-letter message, through the replay path.
#![no_main]
use bakery_core::fanout::{plan, Seen};
use bakery_core::{Classification, Policy};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        [
            include_str!("../../schema/examples/web-app.json"),
            include_str!("../../schema/examples/minimal.json"),
        ]
        .iter()
        .map(|text| Policy::parse(text.as_bytes()).expect("the example policies are valid"))
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = bakery_core::classify(data) {
        // What is classified must print (the CLI and the trigger function serialize it).
        serde_json::to_string(&c).expect("a classification serializes");
        if let Classification::Bake { trigger } = &c {
            let _ = plan(trigger, policies(), &Seen::default());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(payload) = bakery_core::replay::payload(text) {
            let _ = bakery_core::classify_value(payload);
        }
    }
});
