//! Raw bytes into the classifier: it must answer (bake, ignore or a typed error), never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = bakery_core::classify(data) {
        // What is classified must print (the CLI and the trigger function serialize it).
        serde_json::to_string(&c).expect("a classification serializes");
    }
});
