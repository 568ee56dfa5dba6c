//! Interoperability with the client libraries users run, pinned in
//! `tests/clients/requirements.txt` and installed by `tests/run.sh`.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Server, create_token, parquet_rows};

/// The venv's Python: `INFLOW_TEST_PYTHON`, else the venv `tests/run.sh` makes.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("INFLOW_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python venv with the client libraries: run tests/run.sh (it installs them)"
    );
    venv
}

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// The official Python `influxdb-client` writes 100,000 points with gzip and its
/// batching write API; every one is read back from Parquet with exact values.
#[tokio::test]
async fn python_influxdb_client_writes_100k_points() {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "2s"]);
    let token = create_token(dir.path(), "pydb", "write");
    let out = Command::new(python())
        .arg(script("python_v2_write.py"))
        .args([&server.base, &token, "pydb", &N.to_string()])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.stop().success());

    let mut rows = parquet_rows(dir.path(), "pydb", "pyclient").await;
    assert_eq!(rows.len(), N);
    rows.sort_by_key(|r| r["count"].parse::<usize>().unwrap());
    for (i, r) in rows.iter().enumerate() {
        let value = i as f64 * 0.25;
        let expected = [
            ("host", format!("h{}", i % 100)),
            ("region", format!("r{}", i % 7)),
            ("value", format!("{value:?}")),
            ("count", i.to_string()),
            ("ok", (i % 3 == 0).to_string()),
            ("msg", format!("m{i} \"q\" \\ é")),
            (
                "time",
                (1_700_000_000_000_000_000i64 + i as i64 * 1000).to_string(),
            ),
        ];
        for (k, v) in &expected {
            assert_eq!(&r[*k], v, "point {i}, column {k}: {r:?}");
        }
        assert_eq!(r.len(), expected.len(), "point {i}: {r:?}");
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} runs: {e}"));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The npm `@influxdata/influxdb-client` (Node.js) writes with batching and gzip,
/// including unsigned fields; every point is read back exactly.
#[tokio::test]
async fn npm_influxdb_client_writes() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "2s"]);
    let token = create_token(dir.path(), "jsdb", "write");
    let clients = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    assert!(
        clients
            .join("node_modules/@influxdata/influxdb-client")
            .exists(),
        "run tests/run.sh: it installs the npm client"
    );
    run(Command::new("node")
        .current_dir(&clients)
        .arg("js_v2_write.mjs")
        .args([&server.base, &token, "jsdb", &N.to_string()]));
    assert!(server.stop().success());

    let mut rows = parquet_rows(dir.path(), "jsdb", "jsclient").await;
    assert_eq!(rows.len(), N);
    rows.sort_by_key(|r| r["count"].parse::<usize>().unwrap());
    for (i, r) in rows.iter().enumerate() {
        let expected = [
            ("host", format!("h{}", i % 50)),
            ("value", format!("{:?}", i as f64 + 0.5)),
            ("count", i.to_string()),
            ("big", i.to_string()),
            ("ok", (i % 2 == 0).to_string()),
            ("msg", format!("j{i}, \"x\"")),
            (
                "time",
                (1_650_000_000_000_000_000i64 + i as i64).to_string(),
            ),
        ];
        assert_eq!(
            r,
            &expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            "point {i}"
        );
    }
}

/// `influxdb3-python` (InfluxDBClient3.write) and the `influx3` CLI InfluxDB 3 documents,
/// both against the v2 write endpoint they use.
#[tokio::test]
async fn influxdb3_python_and_influx3_cli_write() {
    const N: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "2s"]);
    let token = create_token(dir.path(), "py3db", "write");
    run(Command::new(python())
        .arg(script("python_v3_write.py"))
        .args([&server.base, &token, "py3db", &N.to_string()]));

    // influx3 keeps its configuration under $HOME: give it its own.
    let home = tempfile::tempdir().unwrap();
    let influx3 = python().with_file_name("influx3");
    let cli = |args: &[&str]| run(Command::new(&influx3).env("HOME", home.path()).args(args));
    cli(&[
        "config",
        "create",
        "--name",
        "t",
        "--host",
        &server.base,
        "--token",
        &token,
        "--database",
        "py3db",
        "--org",
        "o",
        "--active",
    ]);
    let said = cli(&["write", "cli,via=influx3", "v=42i", "1700000000000000000"]);
    assert!(!said.to_lowercase().contains("error"), "{said}");
    assert!(server.stop().success());

    let mut rows = parquet_rows(dir.path(), "py3db", "py3client").await;
    assert_eq!(rows.len(), N);
    rows.sort_by_key(|r| r["n"].parse::<usize>().unwrap());
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["sensor"], format!("s{}", i % 10), "point {i}");
        assert_eq!(r["temp"], format!("{:?}", i as f64 / 4.0), "point {i}");
        assert_eq!(
            r["time"],
            ((1_690_000_000 + i as i64) * 1_000_000_000).to_string(),
            "point {i}"
        );
    }
    assert_eq!(
        parquet_rows(dir.path(), "py3db", "cli").await,
        vec![crate::harness::row(&[
            ("via", "influx3"),
            ("v", "42"),
            ("time", "1700000000000000000")
        ])]
    );
}

/// `influxdb3-python` writes, then queries with SQL over its Flight ticket: the
/// exact values and Arrow types come back (tags as strings, `time` as
/// `timestamp[ns]`), and `SHOW TABLES` lists the table.
#[tokio::test]
async fn influxdb3_python_queries_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let token = create_token(dir.path(), "q3db", "read,write");
    let got = python_json("python_v3_query.py", &[&server.base, &token, "q3db"]);
    let expected = serde_json::json!({
        "types": {
            "host": "string", "region": "string", "f": "double", "i": "int64",
            "u": "uint64", "b": "bool", "s": "string", "time": "timestamp[ns]"
        },
        "rows": [
            {"host": "a", "region": "eu", "f": 1.5, "i": -2, "u": 3, "b": true,
             "s": "x \"y\"", "time": 1_700_000_000_000_000_001i64},
            {"host": "b", "region": null, "f": 2.25, "i": 4, "u": null, "b": null,
             "s": null, "time": 1_700_000_000_000_000_002i64}
        ],
        "tables": ["q3"]
    });
    assert_eq!(got, expected);
    assert!(server.stop().success());
}

/// ADBC's Flight SQL driver (pinned): a statement, a prepared statement, the
/// table list (`adbc_get_objects`) and a table's schema.
#[tokio::test]
async fn adbc_flight_sql_queries_and_lists_tables() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let body = "cpu,host=a usage=1.5 1\ncpu,host=b usage=2.5 2\nmem,host=a free=3i 1\n";
    let r = crate::harness::write(&server, "bucket=adb", crate::harness::ADMIN_TOKEN, body).await;
    assert_eq!(r.status, 204);
    let token = create_token(dir.path(), "adb", "read");
    let got = python_json("adbc_flightsql.py", &[&server.base, &token, "adb"]);
    let expected = serde_json::json!({
        "rows": [{"host": "a", "usage": 1.5}, {"host": "b", "usage": 2.5}],
        "prepared": [{"n": 2, "top": 2.5}],
        "tables": ["cpu", "mem"],
        "schema": {"host": "string", "usage": "double", "time": "timestamp[ns]"}
    });
    assert_eq!(got, expected);
    assert!(server.stop().success());
}

/// Runs one of the Python client scripts and parses the JSON line it prints.
pub fn python_json(name: &str, args: &[&str]) -> serde_json::Value {
    let out = run(Command::new(python()).arg(script(name)).args(args));
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{name} printed no JSON line: {out}"));
    serde_json::from_str(line).unwrap()
}

/// What the Superset and Grafana replays chart: two hosts of `cpu` over ten
/// minutes of 2023-01-02 (one without `region`, one without `req`), and `mem`.
const CHART_CORPUS: &str = "cpu,host=a,region=eu usage=1.5,req=10i 1672617600\n\
                            cpu,host=a,region=eu usage=2.5,req=20i 1672617630\n\
                            cpu,host=a,region=eu usage=4 1672617665\n\
                            cpu,host=a,region=eu usage=7 1672617970\n\
                            cpu,host=b usage=10 1672617605\n\
                            cpu,host=b usage=20 1672617725\n\
                            cpu,host=b usage=99 1672618200\n\
                            mem,host=a free=3i 1672617600\n";

/// Apache Superset's path through its DataFusion adapter (`flightsql-dbapi`'s
/// SQLAlchemy dialect, pinned): test connection, schema reflection ("add
/// dataset"), SQL Lab's preview and time-series charts with the time grains of
/// Superset's `DataFusionEngineSpec`, compiled by the dialect; a wrong token and
/// a database the token may not read fail as Flight errors.
#[tokio::test]
async fn superset_flightsql_dialect_reflects_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let body = CHART_CORPUS;
    let admin = crate::harness::ADMIN_TOKEN;
    let r = crate::harness::write(&server, "bucket=sdb&precision=s", admin, body).await;
    assert_eq!(r.status, 204);
    let r = crate::harness::write(&server, "bucket=odb&precision=s", admin, "m v=1 1").await;
    assert_eq!(r.status, 204);
    let token = create_token(dir.path(), "sdb", "read");
    let got = python_json(
        "superset_flightsql.py",
        &[&server.base, &token, "sdb", "odb"],
    );
    let cols = serde_json::json!([
        ["host", "TEXT"],
        ["region", "TEXT"],
        ["usage", "FLOAT"],
        ["req", "BIGINT"],
        ["time", "TIMESTAMP"]
    ]);
    let chart_cols = serde_json::json!([
        ["time", "TIMESTAMP"],
        ["host", "TEXT"],
        ["AVG(usage)", "FLOAT"]
    ]);
    let range = "WHERE time >= TIMESTAMP '2023-01-02 00:00:00.000000' \
                 AND time < TIMESTAMP '2023-01-02 00:10:00.000000'";
    let chart_sql = |grain: &str| {
        format!(
            "SELECT {grain} AS time, host AS host, avg(usage) AS \"AVG(usage)\" \nFROM iox.cpu \n\
             {range} GROUP BY {grain}, host ORDER BY \"AVG(usage)\" DESC\n LIMIT 10000"
        )
    };
    let bin = "DATE_BIN(INTERVAL '5 minutes', time, TIMESTAMP '1970-01-01 00:00:00')";
    let expected = serde_json::json!({
        "ping": true,
        "quote": "\"",
        "schemas": ["iox"],
        "tables": {"iox": ["cpu", "mem"]},
        "views": [],
        "columns": [["host", "TEXT", true], ["region", "TEXT", true], ["usage", "FLOAT", true],
                    ["req", "BIGINT", true], ["time", "TIMESTAMP", false]],
        "keys": [[], [], []],
        "preview": {
            "sql": "SELECT host, region, usage, req, time \nFROM iox.cpu\n LIMIT 100",
            "columns": cols,
            "rows": [
                ["a", "eu", 1.5, 10, "2023-01-02T00:00:00"],
                ["a", "eu", 2.5, 20, "2023-01-02T00:00:30"],
                ["a", "eu", 4.0, null, "2023-01-02T00:01:05"],
                ["a", "eu", 7.0, null, "2023-01-02T00:06:10"],
                ["b", null, 10.0, null, "2023-01-02T00:00:05"],
                ["b", null, 20.0, null, "2023-01-02T00:02:05"],
                ["b", null, 99.0, null, "2023-01-02T00:10:00"]
            ]
        },
        "chart_1m": {
            "sql": chart_sql("DATE_TRUNC('minute', time)"),
            "columns": chart_cols,
            "rows": [
                ["2023-01-02T00:02:00", "b", 20.0],
                ["2023-01-02T00:00:00", "b", 10.0],
                ["2023-01-02T00:06:00", "a", 7.0],
                ["2023-01-02T00:01:00", "a", 4.0],
                ["2023-01-02T00:00:00", "a", 2.0]
            ]
        },
        "chart_5m": {
            "sql": chart_sql(bin),
            "columns": chart_cols,
            "rows": [
                ["2023-01-02T00:00:00", "b", 15.0],
                ["2023-01-02T00:05:00", "a", 7.0],
                ["2023-01-02T00:00:00", "a", 8.0 / 3.0]
            ]
        },
        "bucket_name_tables": ["cpu", "mem"],
        "errors": {
            "bad_token": ["FlightUnauthenticatedError",
                "Flight returned unauthenticated error, with message: unauthorized access"],
            "other_database": ["FlightUnauthorizedError",
                "Flight returned unauthorized error, with message: \
                 token does not have read permission on database \"odb\""]
        }
    });
    assert_eq!(got, expected);
    assert!(server.stop().success());
}

/// Grafana's Flight SQL data source (Go; it cannot run here), replayed call by
/// call from its source: token and `database` metadata, the health check, the
/// editor's GetSqlInfo (rows 17..21 read as keyword and function lists),
/// GetTables for the table and column lists, panels with its macros expanded as
/// it expands them, and the username/password path (a Basic-auth Handshake
/// whose answered `authorization` header it sends on every call).
#[tokio::test]
async fn grafana_flightsql_source_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let body = CHART_CORPUS;
    let admin = crate::harness::ADMIN_TOKEN;
    let r = crate::harness::write(&server, "bucket=gdb&precision=s", admin, body).await;
    assert_eq!(r.status, 204);
    let token = create_token(dir.path(), "gdb", "read");
    let got = python_json("grafana_flightsql.py", &[&server.base, &token, "gdb"]);
    let range = "time >= '2023-01-02T00:00:00Z' AND time <= '2023-01-02T00:10:00Z'";
    let bin = "date_bin(interval '60 second', time, timestamp '1970-01-01T00:00:00Z')";
    let series_types = serde_json::json!([["time", "timestamp[ns]"], ["usage", "double"]]);
    let expected = serde_json::json!({
        "health": [[1]],
        "sql_info": {
            "sorted": true, "name": "inflow", "quote": "\"",
            "editor_rows": ["list", "list", "list", "list", "list"],
            "editor_lists": {"keywords": true, "numeric": true, "string": true, "system": true,
                             "datetime": true, "datetime:datepart": true}
        },
        "tables": ["cpu", "mem"],
        "columns": [["host", "string"], ["region", "string"], ["usage", "double"],
                    ["req", "int64"], ["time", "timestamp[ns]"]],
        "panels": {
            "series": {
                "sql": format!("SELECT {bin} AS time, avg(usage) AS usage FROM cpu WHERE {range} GROUP BY 1 ORDER BY 1"),
                "types": series_types,
                "rows": [["2023-01-02T00:00:00", 14.0 / 3.0], ["2023-01-02T00:01:00", 4.0],
                         ["2023-01-02T00:02:00", 20.0], ["2023-01-02T00:06:00", 7.0],
                         ["2023-01-02T00:10:00", 99.0]]
            },
            "by_host": {
                "sql": format!("SELECT {bin} AS time, host, avg(usage) AS usage FROM cpu WHERE {range} GROUP BY 1, host ORDER BY 1, host"),
                "types": [["time", "timestamp[ns]"], ["host", "string"], ["usage", "double"]],
                "rows": [["2023-01-02T00:00:00", "a", 2.0], ["2023-01-02T00:00:00", "b", 10.0],
                         ["2023-01-02T00:01:00", "a", 4.0], ["2023-01-02T00:02:00", "b", 20.0],
                         ["2023-01-02T00:06:00", "a", 7.0], ["2023-01-02T00:10:00", "b", 99.0]]
            },
            "raw": {
                "sql": "SELECT time, usage FROM cpu WHERE time >= cast('2023-01-02T00:00:00Z' as timestamp) \
                        AND time < cast('2023-01-02T00:10:00Z' as timestamp) AND host = 'a' ORDER BY time",
                "types": series_types,
                "rows": [["2023-01-02T00:00:00", 1.5], ["2023-01-02T00:00:30", 2.5],
                         ["2023-01-02T00:01:05", 4.0], ["2023-01-02T00:06:10", 7.0]]
            },
            "interval": {
                "sql": "SELECT date_bin(interval '60 second', time) AS time, max(usage) AS usage FROM cpu \
                        WHERE time >= '2023-01-02T00:00:00Z' AND time <= '2023-01-02T00:10:00Z' GROUP BY 1 ORDER BY 1",
                "types": series_types,
                "rows": [["2023-01-02T00:00:00", 10.0], ["2023-01-02T00:01:00", 4.0],
                         ["2023-01-02T00:02:00", 20.0], ["2023-01-02T00:06:00", 7.0],
                         ["2023-01-02T00:10:00", 99.0]]
            },
            "bin_alias": {
                "sql": format!("SELECT {bin} as time_binned, count(usage) AS n FROM cpu WHERE {range} GROUP BY 1 ORDER BY 1"),
                "types": [["time_binned", "timestamp[ns]"], ["n", "int64"]],
                "rows": [["2023-01-02T00:00:00", 3], ["2023-01-02T00:01:00", 1],
                         ["2023-01-02T00:02:00", 1], ["2023-01-02T00:06:00", 1],
                         ["2023-01-02T00:10:00", 1]]
            },
            "time_group": {
                "sql": format!("SELECT datepart('hour', time) as time_hour,datepart('day', time) as time_day,\
                                datepart('month', time) as time_month,datepart('year', time) as time_year, \
                                count(*) AS n FROM cpu WHERE {range} GROUP BY datepart('hour', time),\
                                datepart('day', time),datepart('month', time),datepart('year', time)"),
                "types": [["time_hour", "int32"], ["time_day", "int32"], ["time_month", "int32"],
                          ["time_year", "int32"], ["n", "int64"]],
                "rows": [[0, 2, 1, 2023, 7]]
            },
            "variable": {
                "sql": "SELECT DISTINCT host FROM cpu ORDER BY host",
                "types": [["host", "string"]],
                "rows": [["a"], ["b"]]
            },
            // Grafana's InfluxDB source in SQL mode lists from information_schema.
            // DataFusion 55 spells the time type `Timestamp(ns)`, which Grafana's
            // builder (fields.ts) files as text; InfluxDB 3's older DataFusion
            // says `Timestamp(Nanosecond, None)`, which it files as a datetime.
            "core_datasets": {
                "sql": "SELECT DISTINCT TABLE_SCHEMA from information_schema.TABLES \
                        where TABLE_TYPE != 'SYSTEM VIEW' ORDER BY TABLE_SCHEMA",
                "types": [["table_schema", "string"]],
                "rows": [["information_schema"], ["iox"]]
            },
            "core_tables": {
                "sql": "SELECT table_name FROM information_schema.tables \
                        WHERE table_schema = 'iox' ORDER BY table_name",
                "types": [["table_name", "string"]],
                "rows": [["cpu"], ["mem"]]
            },
            "core_columns": {
                "sql": "SELECT column_name, data_type FROM information_schema.columns \
                        WHERE table_schema = 'iox' AND table_name = 'cpu' ORDER BY column_name",
                "types": [["column_name", "string"], ["data_type", "string"]],
                "rows": [["host", "Utf8"], ["region", "Utf8"], ["req", "Int64"],
                         ["time", "Timestamp(ns)"], ["usage", "Float64"]]
            },
            "core_builder": {
                "sql": "SELECT \"host\", AVG(\"usage\") FROM \"cpu\" WHERE \"time\" >= \
                        cast('2023-01-02T00:00:00Z' as timestamp) AND \"time\" <= \
                        cast('2023-01-02T00:10:00Z' as timestamp) AND \"host\" = 'a' \
                        GROUP BY \"host\" ORDER BY \"host\" ASC LIMIT 50",
                "types": [["host", "string"], ["avg(cpu.usage)", "double"]],
                "rows": [["a", 3.75]]
            },
            "builder": {
                "sql": format!("SELECT usage,host,time FROM cpu WHERE host = 'b' and {range} ORDER BY time LIMIT 10"),
                "types": [["usage", "double"], ["host", "string"], ["time", "timestamp[ns]"]],
                "rows": [[10.0, "b", "2023-01-02T00:00:05"], [20.0, "b", "2023-01-02T00:02:05"],
                         [99.0, "b", "2023-01-02T00:10:00"]]
            }
        },
        "basic_auth": [[1]],
        "basic_auth_wrong": ["FlightUnauthenticatedError",
            "Flight returned unauthenticated error, with message: unauthorized access"],
        "bad_token": ["FlightUnauthenticatedError",
            "Flight returned unauthenticated error, with message: unauthorized access"]
    });
    assert_eq!(got, expected);
    assert!(server.stop().success());
}
