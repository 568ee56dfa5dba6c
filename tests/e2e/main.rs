//! End-to-end tests: each starts the real `inflow` binary on an ephemeral port with
//! its own data directory. One test binary, so the crate links once.

mod admin;
mod architecture;
mod bench;
mod cli;
mod clients;
mod cluster;
mod dashboard;
mod durability;
mod endpoints;
mod flight;
mod flight_limits;
mod harness;
mod hostile;
mod hostile_query;
mod influxql;
mod misconfig;
mod ops;
mod query;
mod query_limits;
mod readme;
mod reserved;
mod reuse;
mod sequence;
mod slow_clients;
mod telegraf;
mod wal;
mod write_contract;
