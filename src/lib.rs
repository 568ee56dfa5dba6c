//! inflow: an InfluxDB-compatible line protocol ingest service.
//!
//! ```text
//!  client ──HTTP──► edge (auth, limits, gzip) ──► lineproto (Arrow per table)
//!                     │ catalog schema check
//!                     ▼
//!                   route (sequence, pick ingester) ──Flight DoPut──► ingester
//!                                                          WAL ──► object store
//!                                                          snapshot ──► Parquet + catalog
//! ```
//!
//! Follow a write: `main.rs → serve → edge::write → lineproto → route → ingester`.

pub mod admin;
pub mod auth;
pub mod background;
pub mod bench;
pub mod catalog;
pub mod clock;
pub mod compactor;
pub mod dedup;
pub mod edge;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod influxql;
pub mod ingester;
pub mod lease;
pub mod lifecycle;
pub mod lineproto;
pub mod metrics;
pub mod parquet_files;
pub mod proto;
pub mod query;
pub mod remote;
pub mod route;
pub mod schema;
pub mod series;
pub mod series_hash;
pub mod serve;
pub mod store;
pub mod telemetry;
#[cfg(test)]
pub mod testing;
pub mod tls;
pub mod write;
