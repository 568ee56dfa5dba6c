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

/// A query for one database, in SQL or InfluxQL.
#[derive(Debug, PartialEq, Eq)]
pub struct InfluxTicket {
    pub database: String,
    /// The query text (the ticket's `sql_query`, whatever its language).
    pub sql: String,
    pub language: Language,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Sql,
    InfluxQl,
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
        let language = match json.query_type.as_deref() {
            None | Some("sql") => Language::Sql,
            Some("influxql") => Language::InfluxQl,
            Some(other) => {
                return Err(QueryError::Invalid(format!(
                    "invalid ticket: unknown query_type {other:?}: use \"sql\" or \"influxql\""
                )));
            }
        };
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
            language,
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
                sql: "SELECT 1".into(),
                language: Language::Sql,
            }
        );
        let influxql =
            br#"{"database":"db","sql_query":"SHOW MEASUREMENTS","query_type":"influxql"}"#;
        assert_eq!(
            InfluxTicket::parse(influxql).unwrap().language,
            Language::InfluxQl
        );
        assert!(matches!(
            InfluxTicket::parse(br#"{"database":"db","sql_query":"x","query_type":"flux"}"#),
            Err(QueryError::Invalid(_))
        ));
        assert!(matches!(
            InfluxTicket::parse(b"{\"sql_query\":\"x\"}"),
            Err(QueryError::Invalid(_))
        ));
        assert!(!is_json(b"\x0a\x05hello"));
    }
}
