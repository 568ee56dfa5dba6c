//! The snapshot's two steps on one slice of an ingester's buffer: `merge`
//! (order by series and time, fold points written twice) and `day_files`
//! (Parquet encoding).
//!
//! The slice is what `inflow bench write` sends: TSBS `cpu` lines from 1,000
//! hosts with ten tags and ten float fields, parsed by the edge's parser into
//! chunks of 5,000 rows. 100 chunks (500k rows) are about one 64 MiB slice.
//! `with_rewrites` writes a tenth of the points a second time, five chunks later, so
//! that folding has work to do. Throughput is in rows.
//!
//! Under `cargo test` (no `--bench` argument) two chunks run once, as a smoke
//! test.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inflow::bench::corpus_line;
use inflow::ingester::buffer::Chunk;
use inflow::ingester::snapshot::{day_files, merge, target_schema};
use inflow::lineproto::{EmptySchema, ParseOptions, Precision, parse_lines};

/// The server's allocator: with glibc's, a quarter of the merge was page
/// faults on fresh allocations that the server does not pay.
#[cfg(all(not(target_env = "msvc"), not(miri)))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const LINES_PER_CHUNK: usize = 5_000;
const HOSTS: usize = 1_000;
/// 2025-01-01T00:00:00Z
const START_NS: i64 = 1_735_689_600_000_000_000;

/// Chunk `c` holds corpus lines `first..first + LINES_PER_CHUNK`.
fn chunk(c: u64, first: usize) -> Arc<Chunk> {
    let mut text = String::new();
    for i in first..first + LINES_PER_CHUNK {
        corpus_line(&mut text, i, HOSTS, START_NS);
    }
    let opts = ParseOptions::new(Precision::Nanosecond, START_NS);
    let mut parsed = parse_lines(text.as_bytes(), &opts, &EmptySchema);
    assert_eq!(parsed.error_count, 0, "{:?}", parsed.errors.first());
    let table = parsed.tables.pop().expect("one table");
    Arc::new(Chunk::new(c, c, table.batch))
}

/// `n` chunks of new points; with `rewrites`, chunks 5, 15, 25… rewrite the
/// points of chunks 0, 10, 20… instead.
fn slice(n: usize, rewrites: bool) -> Vec<Arc<Chunk>> {
    (0..n)
        .map(|c| {
            let first = if rewrites && c % 10 == 5 {
                (c - 5) * LINES_PER_CHUNK
            } else {
                c * LINES_PER_CHUNK
            };
            chunk(c as u64, first)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 100 } else { 2 };
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    for (name, rewrites) in [("new_points", false), ("with_rewrites", true)] {
        let chunks = slice(n, rewrites);
        let schema = target_schema([], &chunks);
        let merged = merge(&schema, &chunks).expect("merge");
        let distinct = if rewrites { n - (n + 4) / 10 } else { n };
        assert_eq!(merged.num_rows(), distinct * LINES_PER_CHUNK);
        group.throughput(Throughput::Elements((n * LINES_PER_CHUNK) as u64));
        group.bench_function(format!("merge/{name}"), |b| {
            b.iter(|| merge(&schema, black_box(&chunks)).expect("merge"))
        });
        if !rewrites {
            group.bench_function("day_files", |b| {
                b.iter(|| day_files(black_box(&merged)).expect("encode"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
