//! The schema commit: new tables and columns of a write added to the catalog,
//! and each batch laid out in the catalog's column order.

use super::WriteError;
use crate::catalog::{Catalog, Database, SchemaLimits, TableColumns, table_columns};
use crate::lineproto::TableBatch;
use crate::schema::{ColumnType, arrow_schema, project};

/// Adds new tables and columns to the catalog, then lays every batch out in the
/// catalog's column order (columns it lacks are null). By the database's id:
/// if it was deleted since the write looked it up, the write fails (404)
/// instead of adding its columns to another database of the same name.
pub(super) async fn commit_schema(
    catalog: &Catalog,
    database: &Database,
    tables: Vec<TableBatch>,
    limits: SchemaLimits,
) -> Result<Vec<TableBatch>, WriteError> {
    let schemas: Vec<_> = tables.iter().map(|t| t.batch.schema()).collect();
    let wanted: Vec<TableColumns<'_>> = tables
        .iter()
        .zip(&schemas)
        .map(|(t, schema)| TableColumns {
            table: &t.table,
            columns: schema
                .fields()
                .iter()
                .filter_map(|f| ColumnType::from_arrow_field(f).map(|ty| (f.name().as_str(), ty)))
                .collect(),
        })
        .collect();
    let db = catalog
        .ensure_schema_of(database.key(), &wanted, limits)
        .await?;
    drop(wanted);
    tables
        .into_iter()
        .map(|t| {
            let table = db.table(&t.table).ok_or_else(|| {
                WriteError::Internal(format!("table \"{}\" missing after schema commit", t.table))
            })?;
            let schema = arrow_schema(table_columns(table));
            let batch =
                project(&t.batch, &schema).map_err(|e| WriteError::Internal(e.to_string()))?;
            Ok(TableBatch {
                table: t.table,
                batch,
            })
        })
        .collect()
}
