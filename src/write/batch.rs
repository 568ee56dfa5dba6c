//! A producer's Arrow batch (Flight `DoPut`): brought to the table layout,
//! and held to the rules a line of line protocol is held to.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;

use super::{WriteError, WriteLimits};
use crate::schema::{ColumnType, RESERVED_PREFIX, TIME_COLUMN, arrow_schema, is_reserved};
use crate::series::{Admission, DbSeries, SeriesDay};
use crate::series_hash::{series_id, tag_sums};

/// Converts a producer's batch to the table layout: tags as dictionaries, `time`
/// as a nanosecond timestamp, kinds recorded in field metadata.
pub fn normalize_producer_batch(batch: &RecordBatch) -> Result<RecordBatch, WriteError> {
    let bad = |m: String| WriteError::InvalidBatch(m);
    let mut columns = Vec::with_capacity(batch.num_columns());
    let mut kinds = Vec::with_capacity(batch.num_columns());
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if is_reserved(field.name()) {
            return Err(bad(format!(
                "column name \"{}\" is reserved (names beginning with \"{RESERVED_PREFIX}\" are the server's)",
                field.name()
            )));
        }
        let ty = if field.name() == TIME_COLUMN
            && matches!(field.data_type(), DataType::Timestamp(_, _))
        {
            ColumnType::Time
        } else {
            ColumnType::from_arrow_field(field).ok_or_else(|| {
                bad(format!(
                    "column \"{}\" has unsupported type {}",
                    field.name(),
                    field.data_type()
                ))
            })?
        };
        let target = match ty {
            ColumnType::Time => DataType::Timestamp(TimeUnit::Nanosecond, None),
            t => t.arrow_type(),
        };
        let column = arrow::compute::cast(column, &target)
            .map_err(|e| bad(format!("column \"{}\": {e}", field.name())))?;
        if ty == ColumnType::Time && column.null_count() > 0 {
            return Err(bad("column \"time\" has nulls".into()));
        }
        columns.push(column);
        kinds.push((field.name().as_str(), ty));
    }
    if !kinds.iter().any(|(_, t)| *t == ColumnType::Time) {
        return Err(bad("the batch has no \"time\" timestamp column".into()));
    }
    if !kinds.iter().any(|(_, t)| t.is_field()) {
        return Err(bad("the batch has no field column".into()));
    }
    RecordBatch::try_new(arrow_schema(kinds), columns).map_err(|e| bad(e.to_string()))
}

/// The checks line protocol makes while parsing, made on a producer's batch
/// (already in the table layout): the lengths of names, tag values and string
/// values, and no time before the retention `cutoff`.
pub(super) fn check_batch(
    limits: &WriteLimits,
    table: &str,
    batch: &RecordBatch,
    cutoff: Option<i64>,
) -> Result<(), WriteError> {
    let bad = |m: String| WriteError::InvalidBatch(m);
    let name_limit = limits.max_tag_bytes;
    if table.len() > name_limit {
        return Err(bad(format!(
            "table name is {} bytes, over the limit of {name_limit} (--max-tag-bytes)",
            table.len()
        )));
    }
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        if name.len() > name_limit {
            return Err(bad(format!(
                "column name is {} bytes, over the limit of {name_limit} (--max-tag-bytes)",
                name.len()
            )));
        }
        let (values, keys, what, limit, flag) = match ColumnType::from_arrow_field(field) {
            Some(ColumnType::Tag) => {
                let dict = column.as_any_dictionary_opt().ok_or_else(|| {
                    WriteError::Internal(format!("tag column \"{name}\" is not a dictionary"))
                })?;
                let keys = dict.normalized_keys();
                (
                    dict.values().clone(),
                    Some(keys),
                    "value of tag",
                    name_limit,
                    "--max-tag-bytes",
                )
            }
            Some(ColumnType::String) => (
                column.clone(),
                None,
                "string value of field",
                limits.max_string_bytes,
                "--max-string-bytes",
            ),
            Some(ColumnType::Time) => {
                if let (Some(min), Some(times)) =
                    (cutoff, column.as_primitive_opt::<TimestampNanosecondType>())
                    && let Some(row) = times.values().iter().position(|&t| t < min)
                {
                    return Err(bad(format!(
                        "row {}: timestamp {} is older than the database's retention period: points must be at or after {} ({min} ns)",
                        row + 1,
                        times.value(row),
                        chrono::DateTime::from_timestamp_nanos(min)
                            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    )));
                }
                continue;
            }
            _ => continue,
        };
        let Some(strings) = values.as_string_opt::<i32>() else {
            continue;
        };
        let too_long = |row: usize, value: usize| {
            (strings.is_valid(value) && strings.value(value).len() > limit).then(|| {
                bad(format!(
                    "row {}: {what} \"{name}\" is {} bytes, over the limit of {limit} ({flag})",
                    row + 1,
                    strings.value(value).len()
                ))
            })
        };
        let found = match &keys {
            Some(keys) => keys
                .iter()
                .enumerate()
                .filter(|(row, _)| column.is_valid(*row))
                .find_map(|(row, &key)| too_long(row, key)),
            None => (0..strings.len()).find_map(|row| too_long(row, row)),
        };
        if let Some(e) = found {
            return Err(e);
        }
    }
    Ok(())
}

/// The series id of each row.
pub(super) fn series_ids(table: &str, batch: &RecordBatch) -> Result<Vec<u64>, WriteError> {
    if batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .is_none()
    {
        return Err(WriteError::InvalidBatch(
            "the batch has no nanosecond \"time\"".into(),
        ));
    }
    Ok(tag_sums(batch)
        .into_iter()
        .map(|sum| series_id(table, sum))
        .collect())
}

/// Checks every row's series against the database's quota; the series and
/// days the batch adds, or the first row past the quota.
pub(super) async fn admit(
    series: &DbSeries,
    ids: &[u64],
    batch: &RecordBatch,
) -> Result<Vec<SeriesDay>, WriteError> {
    let times = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| WriteError::InvalidBatch("the batch has no nanosecond \"time\"".into()))?;
    let live = series.live().read().await;
    let mut admission = Admission::default();
    // Rows of the series just checked, before its checked day, pass.
    let mut last = (0, i64::MIN);
    for (row, (&id, time)) in ids.iter().zip(times.values()).enumerate() {
        if id == last.0 && *time < last.1 {
            continue;
        }
        let checked = admission.check(&*live, id, *time).map_err(|over| {
            WriteError::SeriesLimit(format!(
                "row {}: new series would exceed the database's limit of {} series (it has {})",
                row + 1,
                over.limit,
                over.current
            ))
        })?;
        last = (id, checked.until_ns);
        admission.admit(checked);
    }
    Ok(admission.into_found())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Float64Array, TimestampNanosecondArray, UInt64Array};

    /// A producer cannot send the hidden write sequence (or any `_inflow_`
    /// column) and so forge which write of a point wins.
    #[test]
    fn reserved_columns_are_refused() {
        let batch = RecordBatch::try_from_iter([
            (
                "time",
                Arc::new(TimestampNanosecondArray::from(vec![1])) as _,
            ),
            ("v", Arc::new(Float64Array::from(vec![1.0])) as _),
            (
                "_inflow_seq",
                Arc::new(UInt64Array::from(vec![u64::MAX])) as _,
            ),
        ])
        .unwrap();
        let e = normalize_producer_batch(&batch).unwrap_err();
        assert!(
            e.to_string()
                .contains("column name \"_inflow_seq\" is reserved"),
            "{e}"
        );
        let ok = batch.project(&[0, 1]).unwrap();
        assert_eq!(normalize_producer_batch(&ok).unwrap().num_rows(), 1);
    }
}
