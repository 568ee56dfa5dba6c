//! Throughput of `lineproto::parse_lines` (into Arrow batches) against
//! InfluxData's `influxdb-line-protocol` crate (into its parsed lines, every
//! field value read), on the same generated, deterministic bodies in one run.
//!
//! `telegraf_cpu`: 5,000 lines like Telegraf's `cpu` input with ten tags and ten
//! float fields from ~100 hosts. `mixed_types`: the same series with integer,
//! unsigned, string and boolean fields. Throughput is reported in bytes; the
//! average line length printed at start-up turns it into lines per second.
//! `gunzip` times the edge's decompression of the same body, gzipped.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inflow::edge::body::gunzip;
use inflow::lineproto::{
    ColumnType, EmptySchema, LineCheck, ParseOptions, Precision, SeriesQuota, parse_lines,
};
use inflow::series::{LineAdmission, SeriesLookup};

const LINES: usize = 5_000;
const HOSTS: u64 = 100;
const START_NS: i64 = 1_700_000_000_000_000_000;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A percentage with up to 9 decimals, as Telegraf writes them.
    fn percent(&mut self) -> f64 {
        (self.below(100_000_000_000) as f64) / 1e9
    }
}

/// The tag set of host `h`, as Telegraf's global tags would make it.
fn series(h: u64) -> String {
    const REGIONS: [&str; 4] = ["us-west-2", "us-east-1", "eu-central-1", "ap-south-1"];
    const OS: [&str; 2] = ["Ubuntu", "RHEL"];
    const ARCH: [&str; 2] = ["x64", "arm64"];
    const TEAMS: [&str; 5] = ["LON", "NYC", "SF", "CHI", "BER"];
    const SERVICES: [&str; 4] = ["api", "web", "worker", "db"];
    const ENVS: [&str; 3] = ["production", "staging", "test"];
    let i = h as usize;
    format!(
        "hostname=host_{h},region={},datacenter={}{},rack={},os={},arch={},team={},service={},service_version={},service_environment={}",
        REGIONS[i % 4],
        REGIONS[i % 4],
        ["a", "b", "c"][i % 3],
        i % 17,
        OS[i % 2],
        ARCH[(i / 2) % 2],
        TEAMS[i % 5],
        SERVICES[i % 4],
        i % 3,
        ENVS[i % 3],
    )
}

fn telegraf_cpu() -> Vec<u8> {
    const FIELDS: [&str; 10] = [
        "usage_user",
        "usage_system",
        "usage_idle",
        "usage_nice",
        "usage_iowait",
        "usage_irq",
        "usage_softirq",
        "usage_steal",
        "usage_guest",
        "usage_guest_nice",
    ];
    let tags: Vec<String> = (0..HOSTS).map(series).collect();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mut body = String::new();
    for n in 0..LINES {
        let h = n as u64 % HOSTS;
        body.push_str("cpu,");
        body.push_str(&tags[h as usize]);
        for (k, name) in FIELDS.iter().enumerate() {
            body.push(if k == 0 { ' ' } else { ',' });
            body.push_str(&format!("{name}={}", rng.percent()));
        }
        let t = START_NS + (n as i64 / HOSTS as i64) * 10_000_000_000;
        body.push_str(&format!(" {t}\n"));
    }
    body.into_bytes()
}

fn mixed_types() -> Vec<u8> {
    let tags: Vec<String> = (0..HOSTS).map(series).collect();
    let mut rng = Rng(0x5eed_cafe_f00d_0002);
    let mut body = String::new();
    for n in 0..LINES {
        let h = n as u64 % HOSTS;
        let t = START_NS + (n as i64 / HOSTS as i64) * 10_000_000_000;
        body.push_str(&format!(
            "app,{} requests={}i,errors={}i,bytes_sent={}u,uptime={}u,status=\"{}\",message=\"{}\",healthy={},degraded={},latency={} {t}\n",
            tags[h as usize],
            rng.below(1_000_000),
            rng.below(100) as i64 - 50,
            rng.below(1 << 40),
            rng.below(10_000_000),
            ["ok", "warn", "critical"][rng.below(3) as usize],
            ["served \\\"GET /\\\"", "cache miss", "retrying upstream"][rng.below(3) as usize],
            ["true", "t", "FALSE"][rng.below(3) as usize],
            ["false", "F", "True"][rng.below(3) as usize],
            rng.percent(),
        ));
    }
    body.into_bytes()
}

/// Parses with InfluxData's crate and reads every value, so that nothing it
/// produces lazily is left out.
fn theirs(text: &str) -> u64 {
    use influxdb_line_protocol::FieldValue;
    let lines: Vec<_> = influxdb_line_protocol::parse_lines(text)
        .collect::<Result<_, _>>()
        .expect("the corpus is valid");
    let mut sum = 0u64;
    for line in &lines {
        sum = sum.wrapping_add(line.series.measurement.len() as u64);
        for (k, v) in line.series.tag_set.iter().flatten() {
            sum = sum.wrapping_add((k.len() + v.len()) as u64);
        }
        for (k, v) in &line.field_set {
            sum = sum.wrapping_add(k.len() as u64);
            sum = sum.wrapping_add(match v {
                FieldValue::I64(v) => *v as u64,
                FieldValue::U64(v) => *v,
                FieldValue::F64(v) => v.to_bits(),
                FieldValue::String(s) => s.len() as u64,
                FieldValue::Boolean(b) => u64::from(*b),
            });
        }
        sum = sum.wrapping_add(line.timestamp.unwrap_or_default() as u64);
    }
    sum
}

/// The series a database has, as a write's series quota check sees them.
struct Known(std::collections::HashMap<u64, i32, ahash::RandomState>);

impl SeriesLookup for Known {
    fn last_day(&self, series: u64) -> Option<i32> {
        self.0.get(&series).copied()
    }
    fn count(&self) -> usize {
        self.0.len()
    }
    fn limit(&self) -> usize {
        usize::MAX
    }
}

/// A line check with the series quota, as the writer's: every line's
/// series is checked.
struct WithSeries<'a>(LineAdmission<'a>);

impl<'a> WithSeries<'a> {
    fn new(known: &'a Known) -> Self {
        Self(LineAdmission::new(known))
    }
}

impl LineCheck for WithSeries<'_> {
    fn column_type(&self, _: &str, _: &str) -> Option<ColumnType> {
        None
    }
    fn counts_series(&self) -> bool {
        true
    }
    fn check_series(&self, series: u64, time_ns: i64) -> Result<i64, SeriesQuota> {
        self.0.check(series, time_ns)
    }
    fn admit_series(&self, series: u64) {
        self.0.admit(series)
    }
}

/// The series of `body`, all known (the steady state of a Telegraf fleet).
fn known_series(body: &[u8], opts: &ParseOptions) -> Known {
    let none = Known(Default::default());
    let check = WithSeries::new(&none);
    parse_lines(body, opts, &check);
    let found = check.0.into_found();
    Known(found.iter().map(|s| (s.series, s.day)).collect())
}

fn bench(c: &mut Criterion) {
    let opts = ParseOptions::new(Precision::Nanosecond, START_NS);
    for (name, body) in [
        ("telegraf_cpu", telegraf_cpu()),
        ("mixed_types", mixed_types()),
    ] {
        let parsed = parse_lines(&body, &opts, &EmptySchema);
        assert_eq!(parsed.error_count, 0, "{:?}", parsed.errors.first());
        assert_eq!(parsed.lines, LINES);
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(influxdb_line_protocol::parse_lines(text).count(), LINES);
        eprintln!(
            "{name}: {} bytes, {LINES} lines, {:.1} bytes/line",
            body.len(),
            body.len() as f64 / LINES as f64
        );
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("inflow_to_arrow", |b| {
            b.iter(|| parse_lines(black_box(&body), &opts, &EmptySchema))
        });
        let known = known_series(&body, &opts);
        assert_eq!(known.0.len(), HOSTS as usize);
        group.bench_function("inflow_to_arrow_series_checked", |b| {
            b.iter(|| parse_lines(black_box(&body), &opts, &WithSeries::new(&known)))
        });
        group.bench_function("influxdb_line_protocol", |b| {
            b.iter(|| theirs(black_box(text)))
        });
        // What the edge does first with a gzip body (throughput in the same
        // decompressed bytes as the parse).
        let gz = gzip(&body);
        group.bench_function("gunzip", |b| {
            b.iter(|| gunzip(black_box(&gz), usize::MAX).expect("valid gzip"))
        });
        group.finish();
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).expect("writes to a Vec");
    encoder.finish().expect("writes to a Vec")
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
