//! The Flight SQL `GetSqlInfo` answer: the facts InfluxDB 3 answers, with the
//! same ids, because clients read it by position: Grafana's Flight SQL editor
//! takes row 17 of the full answer as its keywords and spreads rows 18 to 21 as
//! function lists (a shorter answer throws in the editor). The keywords are those of
//! DataFusion's SQL parser, the functions those DataFusion registers, filed by
//! the section of DataFusion's documentation they belong to.

use std::collections::BTreeSet;

use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedTransactions,
    SupportedSqlGrammar,
};
use datafusion::execution::SessionStateDefaults;
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use tonic::Status;

/// The scalar functions by the lists Flight SQL has for them.
#[derive(Default)]
struct Functions {
    numeric: BTreeSet<String>,
    string: BTreeSet<String>,
    datetime: BTreeSet<String>,
    system: BTreeSet<String>,
}

/// Every name (and alias) of DataFusion's default scalar functions, the ones
/// a query session has, by documentation section.
fn functions() -> Functions {
    let mut f = Functions::default();
    for udf in SessionStateDefaults::default_scalar_functions() {
        let section = udf.documentation().map(|d| d.doc_section.label);
        let list = match section {
            Some("Math Functions") => &mut f.numeric,
            Some(
                "String Functions" | "Binary String Functions" | "Regular Expression Functions",
            ) => &mut f.string,
            Some("Time and Date Functions") => &mut f.datetime,
            _ => &mut f.system,
        };
        list.insert(udf.name().to_string());
        list.extend(udf.aliases().iter().cloned());
    }
    f
}

/// The facts, in id order (the builder keeps them sorted by id).
pub fn sql_info() -> Result<SqlInfoData, Status> {
    let f = functions();
    let list = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>();
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "inflow");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransactions::SqlTransactionUnspecified as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    // Prepared-statement handles carry their statement and never expire.
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    // Not SqlQuotedIdentifierCase: a quoted identifier keeps its case, which
    // none of its values says; and without it the keywords are row 17, where
    // Grafana's editor reads them (InfluxDB 3 has one row more).
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, ALL_KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, list(f.numeric));
    b.append(SqlInfo::SqlStringFunctions, list(f.string));
    b.append(SqlInfo::SqlSystemFunctions, list(f.system));
    b.append(SqlInfo::SqlDatetimeFunctions, list(f.datetime));
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        SupportedSqlGrammar::SqlCoreGrammar as i32,
    );
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.build().map_err(|e| Status::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The functions Grafana's macros and Superset's time grains expand to are
    /// filed where a client looks for them.
    #[test]
    fn functions_are_filed_by_section() {
        let f = functions();
        for name in ["date_bin", "date_trunc", "datepart", "date_part", "now"] {
            assert!(f.datetime.contains(name), "{name}");
        }
        assert!(f.numeric.contains("abs") && f.string.contains("concat"));
        assert!(f.system.contains("coalesce"));
        assert!(sql_info().is_ok());
    }
}
