//! The Grafana dashboard (`helm/inflow/dashboards/inflow.json`) and the alert
//! rules (`helm/inflow/rules/inflow-alerts.yaml`) ask only for metrics the
//! server exports: every PromQL expression in them is parsed for the metric
//! names it selects, and each name must be among those scraped from
//! `/metrics` of a router, an ingester and a querier in separate processes
//! after writes (good and bad lines), snapshots, and SQL and InfluxQL queries
//! over HTTP and Flight.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{ADMIN_TOKEN, Server, eventually, request, write};

fn chart_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("helm/inflow")
        .join(path)
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(chart_file("dashboards/inflow.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// The panels that draw something (rows only group them).
fn drawn_panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let panels = dashboard["panels"].as_array().expect("panels");
    panels.iter().filter(|p| p["type"] != "row").collect()
}

/// Every `expr` of the dashboard's panels, with the panel's title.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for panel in drawn_panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            exprs.push((title.clone(), expr.to_string()));
        }
    }
    exprs
}

/// Every `expr:` of the rules file with its alert's name: an inline value or
/// a block scalar (`expr: |`), whose lines are those indented deeper than
/// the key.
fn rule_exprs(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut alert = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            alert = name.trim().to_string();
        }
        if let Some(value) = trimmed.strip_prefix("expr:") {
            let value = value.trim();
            if value == "|" || value == ">" || value == "|-" || value == ">-" {
                let indent = line.len() - trimmed.len();
                let mut block = Vec::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push(next.trim());
                    i += 1;
                }
                exprs.push((alert.clone(), block.join("\n")));
            } else {
                exprs.push((alert.clone(), value.to_string()));
            }
        }
        i += 1;
    }
    exprs
}

/// PromQL words that are not metric names: aggregation operators,
/// keywords, and (followed by `(`) functions.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
];

/// The metric names an expression selects: identifiers outside strings,
/// label matchers (`{...}`), ranges (`[...]`) and label lists (`by (...)`
/// and the like), that are not keywords and not followed by `(`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // The label list after these keywords is label names, not metrics.
    let mut labels_next = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if labels_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                labels_next = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                    || (i == start && chars[i] == '$')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let call = chars.get(j) == Some(&'(');
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    labels_next = true;
                } else if !call && !word.starts_with('$') && !KEYWORDS.contains(&lower.as_str()) {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number, or a duration such as 5m after `offset`.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The sample names of a scrape (histograms as `_bucket`, `_sum`, `_count`).
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The (where, name) pairs of `exprs` whose name no scrape exports.
fn missing(exprs: &[(String, String)], exported: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for (place, expr) in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric found in {expr:?}");
        for name in names {
            if !exported.contains(&name) {
                missing.push((place.clone(), name));
            }
        }
    }
    missing
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, api) (rate(inflow_write_duration_seconds_bucket{namespace=~"$namespace", x="a{b}"}[$__rate_interval])))"#
        ),
        ["inflow_write_duration_seconds_bucket"]
    );
    assert_eq!(
        names("max by (ingester) (a_bytes / on (pod) group_left (ingester) b_limit) > 0.8"),
        ["a_bytes", "b_limit"]
    );
    assert_eq!(
        names("count(up == 0) or vector(0) unless bool process_open_fds offset 5m"),
        ["process_open_fds", "up"]
    );
    assert_eq!(names(r#"sum(rate(x_total{a="("}[5m]))"#), ["x_total"]);
}

/// The JSON is a dashboard Grafana imports: each panel queries the
/// templated Prometheus data source and has a query; the variables the
/// chart's users select by are there.
#[test]
fn the_dashboard_is_valid_and_every_panel_has_a_datasource_and_a_query() {
    let dashboard = dashboard();
    let panels = drawn_panels(&dashboard);
    assert!(panels.len() >= 20, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let title = panel["title"].as_str().expect("a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "{title}: id reused"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert_eq!(panel["datasource"]["type"], "prometheus", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title}: empty expr");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            // Every query is limited to the selected pods.
            assert!(expr.contains(r#"pod=~"$pod""#), "{title}: {expr}");
        }
        let pos = &panel["gridPos"];
        assert!(
            pos["w"].as_u64().unwrap() + pos["x"].as_u64().unwrap() <= 24,
            "{title}"
        );
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "role", "pod"]);
    assert_eq!(dashboard["templating"]["list"][0]["query"], "prometheus");
}

/// Runs `q` as InfluxQL over the InfluxDB 3 Flight ticket.
async fn flight_influxql(base: &str, q: &str) {
    let ticket = serde_json::json!({
        "database": "dash",
        "sql_query": q,
        "query_type": "influxql",
    });
    let batches =
        crate::query::query_ticket(base, Some(ADMIN_TOKEN), ticket.to_string().into_bytes())
            .await
            .unwrap();
    assert!(!batches.is_empty());
}

async fn scrape(server: &Server) -> String {
    let r = request("GET", &server.url("/metrics"), &[], "").await;
    assert_eq!(r.status, 200);
    String::from_utf8(r.body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_and_alert_query_names_an_exported_metric() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token_file = dir.path().join("cluster-token");
    std::fs::write(&token_file, "cluster-secret\n").unwrap();
    let token = token_file.to_str().unwrap();
    let ingester = Server::start(
        &data,
        &[
            "--role",
            "ingester",
            "--ingester-id",
            "ing-0",
            "--grpc-bind",
            "127.0.0.1:0",
            "--cluster-token-file",
            token,
            "--snapshot-interval",
            "1s",
            "--compaction-interval",
            "1s",
            "--compaction-min-files",
            "2",
        ],
    );
    let addr = ingester.grpc_addr();
    let split = ["--ingesters", &addr, "--cluster-token-file", token];
    let router = Server::start(&data, &[&["--role", "router"], &split[..]].concat());
    let querier = Server::start(&data, &[&["--role", "querier"], &split[..]].concat());

    // Two snapshots (two Parquet files for the compactor), and a bad line.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (i, lines) in [
        format!("cpu,host=a usage=1 {now}"),
        format!("cpu,host=b usage=2 {now}\nbad"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = write(&router, "bucket=dash&precision=s", ADMIN_TOKEN, lines).await;
        assert_eq!(r.status, if i == 0 { 204 } else { 400 });
        let snapshots = i + 1;
        eventually(Duration::from_secs(20), "a snapshot", || async {
            let text = scrape(&ingester).await;
            text.lines().any(|l| {
                l.starts_with(r#"inflow_snapshots_total{ingester="ing-0",outcome="ok"}"#)
                    && l.rsplit(' ').next().and_then(|v| v.parse::<usize>().ok()) >= Some(snapshots)
            })
        })
        .await;
    }
    let auth = [("authorization", "Bearer test-admin-token")];
    for path in [
        "/api/v3/query_sql?db=dash&q=SELECT%20count(*)%20FROM%20cpu",
        "/query?db=dash&q=SELECT%20*%20FROM%20cpu",
        "/api/v3/query_influxql?db=dash&q=SELECT%20*%20FROM%20cpu",
    ] {
        let r = request("GET", &querier.url(path), &auth, "").await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
    let rows = crate::query::query(
        &querier.base,
        Some(ADMIN_TOKEN),
        "dash",
        "SELECT * FROM cpu",
    )
    .await
    .unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    flight_influxql(&querier.base, "SELECT * FROM cpu").await;
    // A query refused for the client's fault, on each transport.
    let missing_table = "/api/v3/query_sql?db=dash&q=SELECT%20*%20FROM%20nope";
    let r = request("GET", &querier.url(missing_table), &auth, "").await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let refused = crate::query::query(
        &querier.base,
        Some(ADMIN_TOKEN),
        "dash",
        "SELECT * FROM nope",
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused}");

    let mut names = BTreeSet::new();
    let mut texts = Vec::new();
    for server in [&router, &ingester, &querier] {
        let text = scrape(server).await;
        names.extend(exported(&text));
        texts.push(text);
    }
    let querier_text = &texts[2];
    for kind in ["sql", "influxql"] {
        for transport in ["http", "flight"] {
            // InfluxQL over HTTP: 1.x's `/query` and InfluxDB 3's `/api/v3/query_influxql`.
            let n = if (kind, transport) == ("influxql", "http") {
                2
            } else {
                1
            };
            let count = format!(
                "inflow_query_duration_seconds_count{{kind=\"{kind}\",outcome=\"ok\",transport=\"{transport}\"}} {n}"
            );
            assert!(querier_text.contains(&count), "{count} in {querier_text}");
        }
    }
    for transport in ["http", "flight"] {
        let count = format!(
            "inflow_query_duration_seconds_count{{kind=\"sql\",outcome=\"client_error\",transport=\"{transport}\"}} 1"
        );
        assert!(querier_text.contains(&count), "{count} in {querier_text}");
    }

    let mut exprs = dashboard_exprs(&dashboard());
    let rules = std::fs::read_to_string(chart_file("rules/inflow-alerts.yaml")).unwrap();
    let alerts = rule_exprs(&rules);
    assert_eq!(
        alerts.len(),
        rules.matches("- alert:").count(),
        "{alerts:?}"
    );
    exprs.extend(alerts);
    assert_eq!(
        missing(&exprs, &names),
        [] as [(String, String); 0],
        "exported: {names:?}"
    );

    // A misspelt name in the dashboard would be caught.
    let mut misspelt = dashboard_exprs(&dashboard());
    for (_, expr) in &mut misspelt {
        *expr = expr.replace("inflow_write_lines_total", "inflow_write_line_total");
    }
    let caught = missing(&misspelt, &names);
    assert!(
        caught.iter().any(|(_, n)| n == "inflow_write_line_total"),
        "{caught:?}"
    );

    for server in [router, querier, ingester] {
        assert!(server.stop().success());
    }
}
