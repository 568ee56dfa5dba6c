//! The InfluxDB 3 Flight ticket: plain JSON, as `influxdb3-python` and other
//! InfluxDB 3 clients send it, e.g.
//! `{"database":"db","sql_query":"SELECT 1","query_type":"sql"}`.
//! Flight SQL tickets are protobuf `Any` messages; a ticket that starts with
//! `{` is ours.

use serde::Deserialize;

use super::QueryError;

#[derive(Debug, Deserialize)]
struct Json {
    /// IOx clients of old named it `namespace_name`.
    #[serde(alias = "namespace_name")]
    database: String,
    sql_query: String,
    #[serde(default)]
    query_type: Option<String>,
    #[serde(default)]
    params: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A SQL query for one database.
#[derive(Debug, PartialEq, Eq)]
pub struct InfluxTicket {
    pub database: String,
    pub sql: String,
}

/// Whether a ticket is the InfluxDB JSON kind (else Flight SQL).
pub fn is_json(ticket: &[u8]) -> bool {
    ticket
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

impl InfluxTicket {
    pub fn parse(ticket: &[u8]) -> Result<Self, QueryError> {
        let json: Json = serde_json::from_slice(ticket)
            .map_err(|e| QueryError::Invalid(format!("invalid ticket: {e}")))?;
        match json.query_type.as_deref() {
            None | Some("sql") => {}
            Some("influxql") => {
                return Err(QueryError::NotImplemented(
                    "InfluxQL not supported yet: use \"query_type\":\"sql\"".into(),
                ));
            }
            Some(other) => {
                return Err(QueryError::Invalid(format!(
                    "invalid ticket: unknown query_type {other:?}: use \"sql\""
                )));
            }
        }
        if json.params.is_some_and(|p| !p.is_empty()) {
            return Err(QueryError::NotImplemented(
                "query parameters are not supported yet".into(),
            ));
        }
        if json.database.is_empty() {
            return Err(QueryError::Invalid("invalid ticket: empty database".into()));
        }
        Ok(Self {
            database: json.database,
            sql: json.sql_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_influxdb3_python_sends() {
        let t = br#"{"database": "db", "sql_query": "SELECT 1", "query_type": "sql"}"#;
        assert!(is_json(t));
        assert_eq!(
            InfluxTicket::parse(t).unwrap(),
            InfluxTicket {
                database: "db".into(),
                sql: "SELECT 1".into()
            }
        );
        let influxql =
            br#"{"database":"db","sql_query":"SHOW MEASUREMENTS","query_type":"influxql"}"#;
        assert!(matches!(
            InfluxTicket::parse(influxql),
            Err(QueryError::NotImplemented(m)) if m.starts_with("InfluxQL not supported yet")
        ));
        assert!(matches!(
            InfluxTicket::parse(b"{\"sql_query\":\"x\"}"),
            Err(QueryError::Invalid(_))
        ));
        assert!(!is_json(b"\x0a\x05hello"));
    }
}
