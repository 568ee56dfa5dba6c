//! The InfluxQL parser on arbitrary text: no panic, errors positioned within
//! the text, and nothing deeper than `MAX_EXPR_DEPTH` accepted (a deeper tree
//! overflows the stack of the check itself, which the fuzzer reports as a
//! crash). The body is `inflow::fuzzing::influxql`, which `cargo test`
//! replays the corpus through.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| inflow::fuzzing::influxql(data));
