//! Raw bytes into the policy parser: valid, or every error with a path; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(errors) = bakery_core::Policy::parse(data) {
        assert!(!errors.0.is_empty(), "a refused policy names at least one problem");
    }
});
