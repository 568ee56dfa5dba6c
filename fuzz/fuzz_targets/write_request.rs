//! Everything a write request goes through short of the network: the query
//! string of each API version, the `Content-Encoding` header, gzip inflation
//! within a limit, and the parser, on arbitrary input. Errors are fine (they
//! become 4xx answers); panics are not. The body is
//! `inflow::fuzzing::write_request`, which `cargo test` replays the corpus
//! through.

#![no_main]

use inflow::fuzzing::{WriteRequest, write_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|r: WriteRequest<'_>| write_request(r));
