//! The data model shared by every layer: what a column is, and how it maps to Arrow.
//!
//! One table per measurement. Tags are `Dictionary(Int32, Utf8)`, fields are one of
//! five Arrow types, and `time` is a non-null nanosecond timestamp. The kind of a
//! column also rides in Arrow field metadata (`inflow.column`), so a batch read back
//! from the WAL, Flight or Parquet says which columns are tags without a catalog.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::new_null_array;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

/// Name of the timestamp column of every table.
pub const TIME_COLUMN: &str = "time";

/// Arrow field metadata key naming a column's kind: `tag`, `field` or `time`.
pub const COLUMN_KIND_KEY: &str = "inflow.column";

/// Hidden column of Parquet files and of ingester reads: the write sequence of
/// each row (for a row merged from several writes, the latest), so a query can
/// order the versions of a point found in different files and buffers. Never
/// shown to users.
pub const SEQUENCE_COLUMN: &str = "_inflow_seq";

/// Column names beginning with this are the server's ([`SEQUENCE_COLUMN`] and
/// any it adds later): a client's tag or field key may not use it, or it could
/// forge the sequence that decides which write of a point wins.
pub const RESERVED_PREFIX: &str = "_inflow_";

/// Whether `name` is reserved for the server's own columns.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// The Arrow field of [`SEQUENCE_COLUMN`]; its kind is `sequence`, so it is
/// never taken for a tag or a field.
pub fn sequence_field() -> Field {
    let metadata = HashMap::from([(COLUMN_KIND_KEY.to_string(), "sequence".to_string())]);
    Field::new(SEQUENCE_COLUMN, DataType::UInt64, false).with_metadata(metadata)
}

/// The type of a column, fixed by the first write that creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Tag,
    Float,
    Integer,
    UInteger,
    String,
    Boolean,
    Time,
}

impl ColumnType {
    pub fn is_field(self) -> bool {
        !matches!(self, Self::Tag | Self::Time)
    }

    /// The name users see in error messages, as InfluxDB spells field types.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tag => "tag",
            Self::Float => "float",
            Self::Integer => "integer",
            Self::UInteger => "unsigned",
            Self::String => "string",
            Self::Boolean => "boolean",
            Self::Time => "time",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Tag => "tag",
            Self::Time => "time",
            _ => "field",
        }
    }

    pub fn arrow_type(self) -> DataType {
        match self {
            Self::Tag => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            Self::Float => DataType::Float64,
            Self::Integer => DataType::Int64,
            Self::UInteger => DataType::UInt64,
            Self::String => DataType::Utf8,
            Self::Boolean => DataType::Boolean,
            Self::Time => DataType::Timestamp(TimeUnit::Nanosecond, None),
        }
    }

    /// The Arrow field of a column of this type; only `time` is non-null.
    pub fn arrow_field(self, name: &str) -> Field {
        let metadata = HashMap::from([(COLUMN_KIND_KEY.to_string(), self.kind().to_string())]);
        Field::new(name, self.arrow_type(), self != Self::Time).with_metadata(metadata)
    }

    /// Recovers the column type of an Arrow field: from its metadata if present,
    /// else by convention (dictionary/Utf8 named anything but `time` is a tag).
    pub fn from_arrow_field(field: &Field) -> Option<Self> {
        let kind = field.metadata().get(COLUMN_KIND_KEY).map(String::as_str);
        let t = match (kind, field.data_type()) {
            (Some("time") | None, DataType::Timestamp(TimeUnit::Nanosecond, _))
                if field.name() == TIME_COLUMN =>
            {
                Self::Time
            }
            (Some("tag") | None, DataType::Dictionary(k, v))
                if **k == DataType::Int32 && **v == DataType::Utf8 =>
            {
                Self::Tag
            }
            (Some("tag"), DataType::Utf8) => Self::Tag,
            (None, DataType::Utf8) => Self::Tag,
            (Some("field"), DataType::Utf8) => Self::String,
            (Some("field") | None, DataType::Float64) => Self::Float,
            (Some("field") | None, DataType::Int64) => Self::Integer,
            (Some("field") | None, DataType::UInt64) => Self::UInteger,
            (Some("field") | None, DataType::Boolean) => Self::Boolean,
            _ => return None,
        };
        Some(t)
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds the Arrow schema of a table from its columns in order.
pub fn arrow_schema<'a>(columns: impl IntoIterator<Item = (&'a str, ColumnType)>) -> Arc<Schema> {
    let fields: Vec<Field> = columns.into_iter().map(|(n, t)| t.arrow_field(n)).collect();
    Arc::new(Schema::new(fields))
}

/// Lays a batch out in `schema`'s column order: columns it lacks become null.
pub fn project(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(Arc::clone(c)),
            Some(c) => arrow::compute::cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_field_round_trips_every_type() {
        for t in [
            ColumnType::Tag,
            ColumnType::Float,
            ColumnType::Integer,
            ColumnType::UInteger,
            ColumnType::String,
            ColumnType::Boolean,
        ] {
            assert_eq!(ColumnType::from_arrow_field(&t.arrow_field("c")), Some(t));
        }
        let time = ColumnType::Time.arrow_field(TIME_COLUMN);
        assert!(!time.is_nullable());
        assert_eq!(ColumnType::from_arrow_field(&time), Some(ColumnType::Time));
    }

    #[test]
    fn plain_arrow_fields_follow_the_convention() {
        let tag = Field::new("host", DataType::Utf8, true);
        assert_eq!(ColumnType::from_arrow_field(&tag), Some(ColumnType::Tag));
        let f = Field::new("x", DataType::Float32, true);
        assert_eq!(ColumnType::from_arrow_field(&f), None);
    }
}
