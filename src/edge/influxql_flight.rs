//! InfluxQL over Arrow Flight: the InfluxDB 3 ticket with
//! `"query_type":"influxql"`. The answer is one table, as InfluxDB 3 gives it:
//! `iox::measurement`, then `time`, then the grouping tags, then the columns.
//! `/api/v3/query_influxql` (in `query_http`) answers the same table.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampNanosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::execution::memory_pool::MemoryReservation;
use futures::StreamExt;
use tonic::metadata::MetadataMap;

use super::error::Error;
use super::frontend::{FlightStream, QueryFrontend, encode_batches};
use crate::influxql::Context;
use crate::influxql::ast::Statement;
use crate::influxql::result::{Series, Value};
use crate::query::Ticket as QueryTicket;

pub const MEASUREMENT_COLUMN: &str = "iox::measurement";

pub async fn run(
    frontend: &QueryFrontend,
    metadata: &MetadataMap,
    database: &str,
    text: &str,
) -> Result<FlightStream, Error> {
    let header = metadata
        .get("authorization")
        .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok());
    let answer = answer(frontend, header.as_ref(), Some(database), text).await?;
    let stream = encode_batches(answer.batch.schema(), vec![answer.batch.clone()]);
    Ok(Box::pin(stream.map(move |item| {
        let _held = &answer;
        item
    })))
}

/// One InfluxQL statement's answer as one table, with the query slot and the
/// memory it holds until it is sent (Flight's ticket and
/// `/api/v3/query_influxql` share it).
pub struct Answer {
    pub batch: RecordBatch,
    _memory: MemoryReservation,
    _ticket: QueryTicket,
}

/// Authenticates `header`, runs the one statement of `text` on `database`
/// (none: the statement must name its database, or need none).
pub async fn answer(
    frontend: &QueryFrontend,
    header: Option<&http::HeaderValue>,
    database: Option<&str>,
    text: &str,
) -> Result<Answer, Error> {
    let principal = frontend.auth.authenticate(header).await?;
    let query = crate::influxql::parse(text)?;
    let [statement] = query.statements.as_slice() else {
        return Err(Error::InvalidQuery(
            "this API takes exactly one InfluxQL statement".into(),
        ));
    };
    let ctx = Context {
        querier: &frontend.querier,
        principal: &principal,
        database,
        now: frontend.querier.clock().now_ns(),
    };
    let ticket = frontend.querier.admit().await?;
    let mut memory = frontend.querier.reservation("influxql answer");
    let series = ticket
        .within(async {
            crate::influxql::execute_counted(&ctx, statement, &mut memory)
                .await
                .map_err(Error::from)
        })
        .await?;
    let batch = to_batch(&series, matches!(statement, Statement::Select(_)))
        .map_err(|e| Error::Internal(format!("building the InfluxQL answer: {e}")))?;
    // The answer is one batch now: charged as such until it is sent.
    drop(series);
    memory.resize(batch.get_array_memory_size());
    Ok(Answer {
        batch,
        _memory: memory,
        _ticket: ticket,
    })
}

/// The series as one table. Column types come from the values (a column with
/// none is a float, as 1.x's null fill is).
pub fn to_batch(series: &[Series], select: bool) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns: Vec<String> = series
        .first()
        .map(|s| s.columns.clone())
        .unwrap_or_default();
    let mut tag_keys: Vec<String> = Vec::new();
    for s in series {
        for (k, _) in s.tags.iter().flatten() {
            if !tag_keys.contains(k) {
                tag_keys.push(k.clone());
            }
        }
    }
    let rows: Vec<(&Series, &Vec<Value>)> = series
        .iter()
        .flat_map(|s| s.values.iter().map(move |row| (s, row)))
        .collect();
    let mut fields = vec![Field::new(MEASUREMENT_COLUMN, DataType::Utf8, false)];
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let mut names = StringBuilder::new();
    for (s, _) in &rows {
        names.append_value(&s.name);
    }
    arrays.push(Arc::new(names.finish()));
    let time_index = columns.iter().position(|c| c == "time").filter(|_| select);
    if let Some(i) = time_index {
        let mut times = TimestampNanosecondBuilder::new();
        for (_, row) in &rows {
            match row.get(i) {
                Some(Value::Time(t)) => times.append_value(*t),
                _ => times.append_null(),
            }
        }
        fields.push(Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ));
        arrays.push(Arc::new(times.finish()));
    }
    for k in &tag_keys {
        let mut b = StringBuilder::new();
        for (s, _) in &rows {
            let v = s.tags.iter().flatten().find(|(key, _)| key == k);
            b.append_option(v.map(|(_, v)| v.as_str()));
        }
        fields.push(Field::new(k, DataType::Utf8, true));
        arrays.push(Arc::new(b.finish()));
    }
    for (i, name) in columns.iter().enumerate() {
        if Some(i) == time_index {
            continue;
        }
        let (ty, array) = column(
            rows.iter()
                .map(|(_, row)| row.get(i).unwrap_or(&Value::Null)),
        );
        fields.push(Field::new(name, ty, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}

fn column<'a>(values: impl Iterator<Item = &'a Value> + Clone) -> (DataType, ArrayRef) {
    let kind = values
        .clone()
        .find(|v| !v.is_null())
        .cloned()
        .unwrap_or(Value::Float(0.0));
    match kind {
        Value::Integer(_) => {
            let mut b = Int64Builder::new();
            values.for_each(|v| match v {
                Value::Integer(i) => b.append_value(*i),
                _ => b.append_null(),
            });
            (DataType::Int64, Arc::new(b.finish()))
        }
        Value::Unsigned(_) => {
            let mut b = UInt64Builder::new();
            values.for_each(|v| match v {
                Value::Unsigned(u) => b.append_value(*u),
                _ => b.append_null(),
            });
            (DataType::UInt64, Arc::new(b.finish()))
        }
        Value::String(_) => {
            let mut b = StringBuilder::new();
            values.for_each(|v| match v {
                Value::String(s) => b.append_value(s),
                _ => b.append_null(),
            });
            (DataType::Utf8, Arc::new(b.finish()))
        }
        Value::Boolean(_) => {
            let mut b = BooleanBuilder::new();
            values.for_each(|v| match v {
                Value::Boolean(x) => b.append_value(*x),
                _ => b.append_null(),
            });
            (DataType::Boolean, Arc::new(b.finish()))
        }
        Value::Time(_) => {
            let mut b = TimestampNanosecondBuilder::new();
            values.for_each(|v| match v {
                Value::Time(t) => b.append_value(*t),
                _ => b.append_null(),
            });
            (
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                Arc::new(b.finish()),
            )
        }
        Value::Float(_) | Value::Null => {
            let mut b = Float64Builder::new();
            values.for_each(|v| b.append_option(v.as_f64()));
            (DataType::Float64, Arc::new(b.finish()))
        }
    }
}
