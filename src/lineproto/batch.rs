//! Per-table Arrow builders fed one validated line at a time.
//!
//! [`Tables::append`] first resolves every tag and field of a line to a column
//! (checking types, duplicates and the column limit) without touching a
//! builder, and only then appends. A rejected line therefore leaves no trace.
//!
//! Columns are kept in order of first appearance. A column that first appears
//! in a later row is null-padded for the earlier rows; a column a row does not
//! set gets a null. Padding is lazy: each column remembers its length and is
//! topped up with nulls when it is next written or when the batch is finished.
//!
//! Fast paths for the common shape of a body (many lines of few series, each
//! with the same columns in the same order):
//!
//! - Series cache: the series of an accepted line (its measurement and tag set,
//!   as written, up to the first unescaped space) is remembered with its table
//!   and the column and dictionary key of each tag. A later line with the same
//!   bytes there skips parsing and resolving its tags: its keys are appended as
//!   they are. Only lines that were accepted are remembered, so a hit is valid.
//! - Tags are dictionary-encoded by our own builder ([`Dict`]), which appends a
//!   known key without hashing the value again.
//! - The table of the previous line is compared by name before any hashing, and
//!   each table remembers which column the i-th tag and i-th field of its
//!   previous line went to, so a line usually resolves with one string
//!   comparison per field.
//! - Maps use aHash: series keys are whole measurement-and-tags prefixes, and
//!   SipHash over them cost more than the rest of the lookup.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

/// A map with a fast, still DoS-resistant, hasher.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

use arrow::array::{
    ArrayBuilder, ArrayRef, ArrowPrimitiveType, BooleanBufferBuilder, BooleanBuilder,
    DictionaryArray, Int32Builder, PrimitiveArray, StringBuilder,
};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{
    Float64Type, Int32Type, Int64Type, Schema, TimestampNanosecondType, UInt64Type,
};
use arrow::record_batch::RecordBatch;

use super::parse::{Fault, FieldValue, Line, Problem};
use super::{LineCheck, SeriesQuota, TableBatch};
use crate::schema::{ColumnType, TIME_COLUMN};
use crate::series_hash::{series_id, tag_hash};

/// Marks a tag/field of a line that is not written (an earlier duplicate field).
const SKIP: usize = usize::MAX;

/// The builders of every table of one request body (`'b`: the body).
pub(crate) struct Tables<'b> {
    tables: Vec<TableBuilder>,
    by_name: HashMap<String, usize>,
    /// The table of the previous line.
    last: usize,
    /// Identifies the line being resolved (see [`Column::stamp`]).
    stamp: u64,
    /// Column of each tag, then each field, of the line being resolved
    /// (indices past the table's columns are pending new columns); or [`SKIP`].
    targets: Vec<usize>,
    /// New columns the line being resolved would add, in order.
    pending: Vec<Pending>,
    max_columns: usize,
    quotas: Quotas,
    /// Tables this request added that the catalog does not have yet.
    new_tables: usize,
    /// Series text (see the module docs) → index into `series_info`.
    series: HashMap<&'b str, u32>,
    series_info: Vec<Series>,
    /// The (column, dictionary key) of each tag of each series, back to back.
    series_tags: Vec<(usize, i32)>,
    /// The (column, key) of each tag of the line committed last.
    committed_tags: Vec<(usize, i32)>,
    /// The series id and checked range of the line committed last.
    committed_series: (u64, i64),
}

/// A remembered series: its table and its tags in `series_tags`.
struct Series {
    table: usize,
    tags: Range<usize>,
    /// Its id ([`crate::series_hash::series_id`]).
    id: u64,
    /// Its points before this time passed the series quota check already.
    checked_until_ns: i64,
}

/// A column the current line would create.
struct Pending {
    /// Index (tags, then fields) of the line's item that sets it last.
    item: usize,
    ty: ColumnType,
    /// Not in the catalog either: it counts against the column quota.
    new_to_catalog: bool,
}

/// The database's quotas (tables; columns per table, `time` included).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quotas {
    pub tables: usize,
    pub columns: usize,
}

struct TableBuilder {
    name: String,
    rows: usize,
    /// Columns this request added that the catalog does not have.
    new_columns: usize,
    columns: Vec<Column>,
    /// Column index by name; also holds pending columns while a line resolves.
    by_name: HashMap<String, usize>,
    time: Prim<TimestampNanosecondType>,
    /// Column of the i-th tag and of the i-th field of the previous line: a
    /// guess checked by name before falling back to `by_name`.
    tag_order: Vec<usize>,
    field_order: Vec<usize>,
}

struct Column {
    name: String,
    ty: ColumnType,
    data: Builder,
    /// The line that last resolved to this column, to find duplicates in a line.
    stamp: u64,
    /// Which item of that line.
    item: usize,
    /// Rows written to `data`, nulls included (kept here to skip the builder).
    len: usize,
}

impl Column {
    /// Pads with nulls up to `rows`, before a value for row `rows` is appended.
    #[inline]
    fn start_row(&mut self, rows: usize) {
        if self.len < rows {
            self.data.append_nulls(rows - self.len);
        }
        self.len = rows + 1;
    }
}

enum Builder {
    Tag(Dict),
    Float(Prim<Float64Type>),
    Integer(Prim<Int64Type>),
    UInteger(Prim<UInt64Type>),
    String(StringBuilder),
    Boolean(BooleanBuilder),
}

/// A tag or field of a line, seen as a column.
struct Item<'l> {
    name: &'l str,
    ty: ColumnType,
    at: usize,
}

fn item<'l>(line: &'l Line<'_>, i: usize) -> Item<'l> {
    match line.tags.get(i) {
        Some(t) => Item {
            name: &t.key,
            ty: ColumnType::Tag,
            at: t.at,
        },
        None => {
            let f = &line.fields[i - line.tags.len()];
            Item {
                name: &f.key,
                ty: f.value.column_type(),
                at: f.at,
            }
        }
    }
}

impl<'b> Tables<'b> {
    pub(crate) fn new(max_columns: usize, quotas: Quotas) -> Self {
        Self {
            quotas,
            new_tables: 0,
            tables: Vec::new(),
            by_name: HashMap::default(),
            last: usize::MAX,
            stamp: 0,
            targets: Vec::new(),
            pending: Vec::new(),
            max_columns,
            series: HashMap::default(),
            series_info: Vec::new(),
            series_tags: Vec::new(),
            committed_tags: Vec::new(),
            committed_series: (0, i64::MIN),
        }
    }

    /// The remembered series whose text is `text`, if any.
    #[inline]
    pub(crate) fn series(&self, text: &str) -> Option<u32> {
        self.series.get(text).copied()
    }

    /// Remembers `text` as the series of the line just appended (which must
    /// have been parsed in full, not through a remembered series).
    pub(crate) fn remember(&mut self, text: &'b str) {
        let Ok(id) = u32::try_from(self.series_info.len()) else {
            return;
        };
        let start = self.series_tags.len();
        self.series_tags.extend_from_slice(&self.committed_tags);
        let (series_id, checked_until_ns) = self.committed_series;
        self.series_info.push(Series {
            table: self.last,
            tags: start..self.series_tags.len(),
            id: series_id,
            checked_until_ns,
        });
        self.series.insert(text, id);
    }

    /// Appends one parsed line with its time in ns; returns the number of field
    /// values written, or why the line was rejected (then nothing was written).
    /// With `series`, the line's measurement and tags were not parsed: they are
    /// those of that remembered series.
    pub(crate) fn append<'l>(
        &mut self,
        line: &'l Line<'_>,
        series: Option<u32>,
        time_ns: i64,
        schema: &dyn LineCheck,
    ) -> Result<usize, Fault<'l>> {
        let t = match series {
            Some(id) => {
                let t = self.series_info[id as usize].table;
                self.last = t;
                t
            }
            None => self.table(&line.measurement),
        };
        self.stamp += 1;
        let table = &self.tables[t];
        // A table's first accepted line adds it to the database: within quota?
        let adds_table = table.rows == 0 && schema.column_count(&table.name).is_none();
        if adds_table && schema.table_count() + self.new_tables >= self.quotas.tables {
            return Err(Fault {
                at: 0,
                problem: Problem::TableQuota {
                    table: Cow::Owned(table.name.clone()),
                    limit: self.quotas.tables,
                    current: schema.table_count() + self.new_tables,
                },
            });
        }
        let checked = match schema.counts_series() {
            true => self.check_series(t, line, series, time_ns, schema)?,
            false => None,
        };
        if let Err(fault) = self.resolve(t, line, schema) {
            // Forget the pending columns registered while resolving.
            let table = &mut self.tables[t];
            for p in &self.pending {
                table.by_name.remove(item(line, p.item).name);
            }
            return Err(fault);
        }
        if adds_table {
            self.new_tables += 1;
        }
        if let Some((id, until_ns)) = checked {
            schema.admit_series(id);
            match series {
                Some(s) => self.series_info[s as usize].checked_until_ns = until_ns,
                None => self.committed_series.1 = until_ns,
            }
        }
        Ok(self.commit(t, line, series, time_ns))
    }

    /// Checks the line's series against the database's series quota. A line of
    /// a remembered series is checked only past the day checked for it.
    fn check_series(
        &mut self,
        t: usize,
        line: &Line<'_>,
        series: Option<u32>,
        time_ns: i64,
        check: &dyn LineCheck,
    ) -> Result<Option<(u64, i64)>, Fault<'static>> {
        let id = match series {
            Some(s) => {
                let s = &self.series_info[s as usize];
                if time_ns < s.checked_until_ns {
                    return Ok(None);
                }
                s.id
            }
            None => {
                let sum = line.tags.iter().fold(0u64, |sum, tag| {
                    sum.wrapping_add(tag_hash(&tag.key, &tag.value))
                });
                let id = series_id(&self.tables[t].name, sum);
                self.committed_series = (id, i64::MIN);
                id
            }
        };
        match check.check_series(id, time_ns) {
            Ok(until_ns) => Ok(Some((id, until_ns))),
            Err(SeriesQuota { limit, current }) => Err(Fault {
                at: 0,
                problem: Problem::SeriesQuota { limit, current },
            }),
        }
    }

    /// The index of the table named `name`, created if new.
    #[inline]
    fn table(&mut self, name: &str) -> usize {
        if let Some(table) = self.tables.get(self.last)
            && table.name == name
        {
            return self.last;
        }
        let t = match self.by_name.get(name) {
            Some(&t) => t,
            None => {
                let t = self.tables.len();
                self.tables.push(TableBuilder::new(name));
                self.by_name.insert(name.to_owned(), t);
                t
            }
        };
        self.last = t;
        t
    }

    /// Maps every tag and field of `line` to a column of table `t`, filling
    /// `targets` and `pending`. Touches no builder.
    fn resolve<'l>(
        &mut self,
        t: usize,
        line: &'l Line<'_>,
        schema: &dyn LineCheck,
    ) -> Result<(), Fault<'l>> {
        let stamp = self.stamp;
        let table = &mut self.tables[t];
        let targets = &mut self.targets;
        let pending = &mut self.pending;
        targets.clear();
        pending.clear();
        let ntags = line.tags.len();
        let n = ntags + line.fields.len();
        if table.tag_order.len() < ntags {
            table.tag_order.resize(ntags, SKIP);
        }
        if table.field_order.len() < n - ntags {
            table.field_order.resize(n - ntags, SKIP);
        }
        let existing = table.columns.len();

        for i in 0..n {
            let it = item(line, i);
            let guess = if i < ntags {
                table.tag_order[i]
            } else {
                table.field_order[i - ntags]
            };
            let c = match table.columns.get(guess) {
                Some(col) if same_name(&col.name, it.name) => guess,
                _ => match table.by_name.get(it.name) {
                    Some(&c) => c,
                    None => {
                        // A new column: check it against the catalog and the limit.
                        if let Some(fixed) = schema.column_type(&table.name, it.name)
                            && fixed != it.ty
                        {
                            return Err(conflict(&table.name, &it, fixed));
                        }
                        let new_to_catalog = schema.column_type(&table.name, it.name).is_none();
                        if new_to_catalog {
                            // `time` counts: a new table starts with it.
                            let current = schema.column_count(&table.name).unwrap_or(1)
                                + table.new_columns
                                + pending.iter().filter(|p| p.new_to_catalog).count();
                            if current >= self.quotas.columns {
                                return Err(Fault {
                                    at: it.at,
                                    problem: Problem::ColumnQuota {
                                        table: Cow::Owned(table.name.clone()),
                                        column: Cow::Owned(it.name.to_owned()),
                                        limit: self.quotas.columns,
                                        current,
                                    },
                                });
                            }
                        }
                        // +1: the time column.
                        if existing + pending.len() + 1 >= self.max_columns {
                            return Err(Fault {
                                at: it.at,
                                problem: Problem::TooManyColumns {
                                    table: Cow::Owned(table.name.clone()),
                                    limit: self.max_columns,
                                },
                            });
                        }
                        let c = existing + pending.len();
                        pending.push(Pending {
                            item: i,
                            ty: it.ty,
                            new_to_catalog,
                        });
                        table.by_name.insert(it.name.to_owned(), c);
                        set_order(table, i, ntags, c);
                        targets.push(c);
                        continue;
                    }
                },
            };
            set_order(table, i, ntags, c);

            // An existing column, or one this line already added.
            let (ty, seen) = match table.columns.get_mut(c) {
                Some(col) => {
                    let seen = (col.stamp == stamp).then_some(col.item);
                    col.stamp = stamp;
                    col.item = i;
                    (col.ty, seen)
                }
                None => {
                    let p = &mut pending[c - existing];
                    let seen = Some(p.item);
                    p.item = i;
                    (p.ty, seen)
                }
            };
            if ty != it.ty {
                let first = seen.map(|s| item(line, s).ty);
                return Err(match first {
                    // Both occurrences are fields of this line.
                    Some(first) if first.is_field() && it.ty.is_field() && c >= existing => Fault {
                        at: it.at,
                        problem: Problem::DuplicateFieldTypes {
                            key: Cow::Borrowed(it.name),
                            first,
                            second: it.ty,
                        },
                    },
                    _ => conflict(&table.name, &it, ty),
                });
            }
            if let Some(prev) = seen {
                if it.ty == ColumnType::Tag {
                    return Err(Fault {
                        at: it.at,
                        problem: Problem::DuplicateTag(Cow::Borrowed(it.name)),
                    });
                }
                // A duplicate field of the same type: the last value wins
                // (as InfluxDB does, see the module docs).
                targets[prev] = SKIP;
            }
            targets.push(c);
        }
        Ok(())
    }

    /// Creates the pending columns and appends the resolved line (with the tags
    /// of `series` if it is one).
    fn commit(&mut self, t: usize, line: &Line<'_>, series: Option<u32>, time_ns: i64) -> usize {
        let table = &mut self.tables[t];
        table.new_columns += self.pending.iter().filter(|p| p.new_to_catalog).count();
        for p in &self.pending {
            table.columns.push(Column {
                name: item(line, p.item).name.to_owned(),
                ty: p.ty,
                data: Builder::new(p.ty),
                stamp: self.stamp,
                item: p.item,
                len: 0,
            });
        }
        let rows = table.rows;
        let ntags = line.tags.len();
        let mut fields = 0;
        self.committed_tags.clear();
        if let Some(id) = series {
            for &(c, key) in &self.series_tags[self.series_info[id as usize].tags.clone()] {
                let column = &mut table.columns[c];
                column.start_row(rows);
                column.data.append_key(key);
            }
        }
        for (i, &c) in self.targets.iter().enumerate() {
            if c == SKIP {
                continue;
            }
            let column = &mut table.columns[c];
            column.start_row(rows);
            match line.tags.get(i) {
                Some(tag) => {
                    let key = column.data.append_tag(&tag.value);
                    self.committed_tags.push((c, key));
                }
                None => {
                    column.data.append_field(&line.fields[i - ntags].value);
                    fields += 1;
                }
            }
        }
        table.time.push(time_ns);
        table.rows += 1;
        fields
    }

    /// The finished batches of tables that received at least one row, in order
    /// of first appearance.
    pub(crate) fn finish(self) -> Vec<TableBatch> {
        self.tables
            .into_iter()
            .filter(|t| t.rows > 0)
            .map(TableBuilder::finish)
            .collect()
    }
}

/// `a == b`, inline for the short names of columns (the library call costs
/// more than the comparison).
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    match n {
        // Two overlapping words cover 8 to 16 bytes.
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

#[inline]
fn set_order(table: &mut TableBuilder, i: usize, ntags: usize, c: usize) {
    if i < ntags {
        table.tag_order[i] = c;
    } else {
        table.field_order[i - ntags] = c;
    }
}

fn conflict<'l>(table: &str, it: &Item<'l>, existing: ColumnType) -> Fault<'l> {
    Fault {
        at: it.at,
        problem: Problem::TypeConflict {
            name: Cow::Borrowed(it.name),
            new: it.ty,
            existing,
            table: Cow::Owned(table.to_owned()),
        },
    }
}

impl TableBuilder {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            rows: 0,
            new_columns: 0,
            columns: Vec::new(),
            by_name: HashMap::default(),
            time: Prim::default(),
            tag_order: Vec::new(),
            field_order: Vec::new(),
        }
    }

    fn finish(mut self) -> TableBatch {
        let mut fields = Vec::with_capacity(self.columns.len() + 1);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        for column in &mut self.columns {
            column.data.pad(self.rows);
            fields.push(column.ty.arrow_field(&column.name));
            arrays.push(column.data.finish());
        }
        fields.push(ColumnType::Time.arrow_field(TIME_COLUMN));
        arrays.push(Arc::new(self.time.finish()));
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema, arrays)
            .expect("every column is padded to the row count and typed by its ColumnType");
        TableBatch {
            table: self.name,
            batch,
        }
    }
}

impl Builder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Tag => Self::Tag(Dict::default()),
            ColumnType::Float => Self::Float(Prim::default()),
            ColumnType::Integer => Self::Integer(Prim::default()),
            ColumnType::UInteger => Self::UInteger(Prim::default()),
            ColumnType::String => Self::String(StringBuilder::new()),
            ColumnType::Boolean => Self::Boolean(BooleanBuilder::new()),
            ColumnType::Time => unreachable!("time is not a tag or field column"),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Tag(b) => b.keys.len(),
            Self::Float(b) => b.len(),
            Self::Integer(b) => b.len(),
            Self::UInteger(b) => b.len(),
            Self::String(b) => b.len(),
            Self::Boolean(b) => b.len(),
        }
    }

    /// Appends nulls up to `rows`.
    fn pad(&mut self, rows: usize) {
        let len = self.len();
        if len < rows {
            self.append_nulls(rows - len);
        }
    }

    #[cold]
    fn append_nulls(&mut self, n: usize) {
        match self {
            Self::Tag(b) => b.keys.append_nulls(n),
            Self::Float(b) => b.push_nulls(n),
            Self::Integer(b) => b.push_nulls(n),
            Self::UInteger(b) => b.push_nulls(n),
            Self::String(b) => b.append_nulls(n),
            Self::Boolean(b) => b.append_nulls(n),
        }
    }

    /// Appends a tag value; returns its dictionary key.
    #[inline]
    fn append_tag(&mut self, value: &str) -> i32 {
        match self {
            Self::Tag(b) => b.append(value),
            _ => unreachable!("resolve checked the column type"),
        }
    }

    /// Appends a tag value by its dictionary key.
    #[inline]
    fn append_key(&mut self, key: i32) {
        match self {
            Self::Tag(b) => b.keys.append_value(key),
            _ => unreachable!("series tags are tag columns"),
        }
    }

    #[inline]
    fn append_field(&mut self, value: &FieldValue<'_>) {
        match (self, value) {
            (Self::Float(b), FieldValue::Float(v)) => b.push(*v),
            (Self::Integer(b), FieldValue::Integer(v)) => b.push(*v),
            (Self::UInteger(b), FieldValue::UInteger(v)) => b.push(*v),
            (Self::String(b), FieldValue::String(v)) => b.append_value(v),
            (Self::Boolean(b), FieldValue::Boolean(v)) => b.append_value(*v),
            _ => unreachable!("resolve checked the column type"),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Tag(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Integer(b) => Arc::new(b.finish()),
            Self::UInteger(b) => Arc::new(b.finish()),
            Self::String(b) => Arc::new(b.finish()),
            Self::Boolean(b) => Arc::new(b.finish()),
        }
    }
}

/// A primitive column: the values in a `Vec` (pushed inline, unlike Arrow's
/// builders, whose calls cost more than the push), validity only from the
/// first null on.
struct Prim<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    nulls: Option<BooleanBufferBuilder>,
}

impl<T: ArrowPrimitiveType> Default for Prim<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            nulls: None,
        }
    }
}

impl<T: ArrowPrimitiveType> Prim<T> {
    fn len(&self) -> usize {
        self.values.len()
    }

    #[inline]
    fn push(&mut self, value: T::Native) {
        self.values.push(value);
        if let Some(nulls) = &mut self.nulls {
            nulls.append(true);
        }
    }

    fn push_nulls(&mut self, n: usize) {
        let len = self.values.len();
        let nulls = self.nulls.get_or_insert_with(|| {
            let mut valid = BooleanBufferBuilder::new(len + n);
            valid.append_n(len, true);
            valid
        });
        nulls.append_n(n, false);
        self.values.resize(len + n, T::Native::default());
    }

    fn finish(&mut self) -> PrimitiveArray<T> {
        let values = ScalarBuffer::from(std::mem::take(&mut self.values));
        let nulls = self.nulls.take().map(|mut b| NullBuffer::new(b.finish()));
        PrimitiveArray::new(values, nulls)
    }
}

/// A `Dictionary(Int32, Utf8)` builder that hands out its keys, so that a
/// value seen before can be appended by key without hashing it again.
#[derive(Default)]
struct Dict {
    keys: Int32Builder,
    values: StringBuilder,
    index: HashMap<Box<str>, i32>,
}

impl Dict {
    #[inline]
    fn append(&mut self, value: &str) -> i32 {
        let key = match self.index.get(value) {
            Some(&key) => key,
            None => {
                // Overflow would need 2^31 distinct values in one body, far
                // beyond any request size limit.
                let key = i32::try_from(self.values.len()).expect("under 2^31 tag values");
                self.values.append_value(value);
                self.index.insert(value.into(), key);
                key
            }
        };
        self.keys.append_value(key);
        key
    }

    fn finish(&mut self) -> DictionaryArray<Int32Type> {
        DictionaryArray::try_new(self.keys.finish(), Arc::new(self.values.finish()))
            .expect("every key indexes a value")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::{Array, AsArray, DictionaryArray};
    use arrow::datatypes::{
        DataType, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampNanosecondType, UInt64Type,
    };

    use super::super::{
        EmptySchema, LineCheck, ParseOptions, ParsedBody, Precision, SeriesQuota, parse_lines,
    };
    use super::same_name;
    use crate::schema::{COLUMN_KIND_KEY, ColumnType};

    fn parse_with(body: &str, schema: &dyn LineCheck) -> ParsedBody {
        let opts = ParseOptions::new(Precision::Nanosecond, 0);
        parse_lines(body.as_bytes(), &opts, schema)
    }

    fn parse(body: &str) -> ParsedBody {
        parse_with(body, &EmptySchema)
    }

    fn messages(p: &ParsedBody) -> Vec<String> {
        p.errors.iter().map(ToString::to_string).collect()
    }

    fn column_names(p: &ParsedBody, table: usize) -> Vec<String> {
        let schema = p.tables[table].batch.schema();
        schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    /// A tag column as strings (None for null).
    fn tags(p: &ParsedBody, table: usize, name: &str) -> Vec<Option<String>> {
        let col = p.tables[table].batch.column_by_name(name).unwrap();
        let dict = col
            .as_any()
            .downcast_ref::<DictionaryArray<Int32Type>>()
            .unwrap();
        let values = dict.values().as_string::<i32>();
        dict.keys()
            .iter()
            .map(|k| k.map(|k| values.value(k as usize).to_owned()))
            .collect()
    }

    fn floats(p: &ParsedBody, table: usize, name: &str) -> Vec<Option<f64>> {
        let col = p.tables[table].batch.column_by_name(name).unwrap();
        col.as_primitive::<Float64Type>().iter().collect()
    }

    struct Catalog(HashMap<(&'static str, &'static str), ColumnType>);

    impl LineCheck for Catalog {
        fn column_type(&self, table: &str, column: &str) -> Option<ColumnType> {
            self.0
                .iter()
                .find(|((t, c), _)| *t == table && *c == column)
                .map(|(_, ty)| *ty)
        }
    }

    #[test]
    fn every_type_lands_in_its_arrow_column() {
        let p = parse(
            "m,host=a f=1.5,i=-2i,u=3u,s=\"x\",b=true 10\n\
             m,host=b f=2,i=4i,u=5u,s=\"y\",b=F 20",
        );
        assert_eq!(p.error_count, 0, "{:?}", p.errors);
        assert_eq!(p.lines, 2);
        assert_eq!(p.fields, 10);
        let batch = &p.tables[0].batch;
        assert_eq!(p.tables[0].table, "m");
        assert_eq!(
            column_names(&p, 0),
            ["host", "f", "i", "u", "s", "b", "time"]
        );
        let types: Vec<DataType> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            [
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                DataType::Float64,
                DataType::Int64,
                DataType::UInt64,
                DataType::Utf8,
                DataType::Boolean,
                DataType::Timestamp(TimeUnit::Nanosecond, None),
            ]
        );
        let kinds: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.metadata()[COLUMN_KIND_KEY].as_str())
            .collect();
        assert_eq!(
            kinds,
            ["tag", "field", "field", "field", "field", "field", "time"]
        );
        assert!(!batch.schema().field(6).is_nullable());
        assert_eq!(tags(&p, 0, "host"), [Some("a".into()), Some("b".into())]);
        assert_eq!(floats(&p, 0, "f"), [Some(1.5), Some(2.0)]);
        let i = batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(i.values().to_vec(), [-2, 4]);
        let u = batch.column(3).as_primitive::<UInt64Type>();
        assert_eq!(u.values().to_vec(), [3, 5]);
        let s = batch.column(4).as_string::<i32>();
        assert_eq!((s.value(0), s.value(1)), ("x", "y"));
        let b = batch.column(5).as_boolean();
        assert_eq!((b.value(0), b.value(1)), (true, false));
        let t = batch.column(6).as_primitive::<TimestampNanosecondType>();
        assert_eq!(t.values().to_vec(), [10, 20]);
    }

    #[test]
    fn escaped_names_and_values_are_unescaped_in_the_batch() {
        let p = parse(r#"my\ table,tag\ key=a\,b\=c field\=key="say \"hi\" \\ ✓""#);
        assert_eq!(p.error_count, 0, "{:?}", p.errors);
        assert_eq!(p.tables[0].table, "my table");
        assert_eq!(column_names(&p, 0), ["tag key", "field=key", "time"]);
        assert_eq!(tags(&p, 0, "tag key"), [Some("a,b=c".into())]);
        let s = p.tables[0].batch.column(1).as_string::<i32>();
        assert_eq!(s.value(0), r#"say "hi" \ ✓"#);
    }

    #[test]
    fn later_columns_are_null_padded_and_absent_ones_null() {
        let p = parse("m a=1\nm a=2,b=3\nm,t=x c=4\nm a=5");
        assert_eq!(p.error_count, 0);
        assert_eq!(column_names(&p, 0), ["a", "b", "t", "c", "time"]);
        assert_eq!(floats(&p, 0, "a"), [Some(1.0), Some(2.0), None, Some(5.0)]);
        assert_eq!(floats(&p, 0, "b"), [None, Some(3.0), None, None]);
        assert_eq!(floats(&p, 0, "c"), [None, None, Some(4.0), None]);
        assert_eq!(tags(&p, 0, "t"), [None, None, Some("x".into()), None]);
        assert_eq!(p.tables[0].batch.num_rows(), 4);
    }

    #[test]
    fn columns_in_another_order_still_land_right() {
        let p = parse("m,x=1,y=2 a=1,b=2\nm,y=3,x=4 b=3,a=4\nm,x=5 b=5");
        assert_eq!(p.error_count, 0);
        assert_eq!(column_names(&p, 0), ["x", "y", "a", "b", "time"]);
        assert_eq!(
            tags(&p, 0, "x"),
            [Some("1".into()), Some("4".into()), Some("5".into())]
        );
        assert_eq!(tags(&p, 0, "y"), [Some("2".into()), Some("3".into()), None]);
        assert_eq!(floats(&p, 0, "a"), [Some(1.0), Some(4.0), None]);
        assert_eq!(floats(&p, 0, "b"), [Some(2.0), Some(3.0), Some(5.0)]);
    }

    #[test]
    fn rejected_lines_leave_no_trace() {
        // Each bad line would add a column, or fails after good fields.
        let p = parse(
            "m a=1\n\
             m a=2,new=1,bad=x\n\
             m,newtag=v a=3,a=1i\n\
             other,t=1 q=1,q=2i\n\
             m a=4,z=1i 99999999999999999999\n\
             m a=5",
        );
        assert_eq!(p.error_count, 4, "{:?}", p.errors);
        assert_eq!(p.lines, 2);
        assert_eq!(p.tables.len(), 1, "a table of only bad lines is dropped");
        assert_eq!(column_names(&p, 0), ["a", "time"]);
        assert_eq!(floats(&p, 0, "a"), [Some(1.0), Some(5.0)]);
        // The names a rejected line would have added are free for other types.
        let p = parse("m a=1,b=2,a=3i\nm b=1i\nm,a=t c=1");
        assert_eq!(p.error_count, 1);
        assert_eq!(p.lines, 2, "{:?}", p.errors);
        assert_eq!(column_names(&p, 0), ["b", "a", "c", "time"]);
    }

    #[test]
    fn type_conflicts_within_a_body() {
        let p = parse("home temp=1\nhome temp=2i\nhome,temp=x f=1\nhome host=1\nhome,host=a f=2");
        assert_eq!(
            messages(&p),
            [
                "line 2, column 6: field \"temp\" is integer but column \"temp\" of table \"home\" is float",
                "line 3, column 6: tag \"temp\" conflicts with column \"temp\" of table \"home\", a field of type float",
                "line 5, column 6: tag \"host\" conflicts with column \"host\" of table \"home\", a field of type float",
            ]
        );
        assert_eq!(p.lines, 2);
        // The same column name in another table is independent.
        let p = parse("a v=1\nb v=1i\nb v=\"s\"");
        assert_eq!(
            messages(&p),
            ["line 3, column 3: field \"v\" is string but column \"v\" of table \"b\" is integer"]
        );
        // A field named like an existing tag.
        let p = parse("m,host=a f=1\nm host=1");
        assert_eq!(
            messages(&p),
            ["line 2, column 3: field \"host\" is float but column \"host\" of table \"m\" is tag"]
        );
        // A tag and a field of the same name in one line.
        let p = parse("m,x=a x=1");
        assert_eq!(
            messages(&p),
            ["line 1, column 7: field \"x\" is float but column \"x\" of table \"m\" is tag"]
        );
    }

    #[test]
    fn type_conflicts_against_the_catalog() {
        let catalog = Catalog(HashMap::from([
            (("home", "temp"), ColumnType::Float),
            (("home", "room"), ColumnType::Tag),
            (("home", "count"), ColumnType::UInteger),
        ]));
        let p = parse_with(
            "home temp=1i\nhome,room=k temp=1,count=2u\nhome room=\"k\"\nhome,count=1 temp=2\nhome count=2i\nhome other=1i",
            &catalog,
        );
        assert_eq!(
            messages(&p),
            [
                "line 1, column 6: field \"temp\" is integer but column \"temp\" of table \"home\" is float",
                "line 3, column 6: field \"room\" is string but column \"room\" of table \"home\" is tag",
                "line 4, column 6: tag \"count\" conflicts with column \"count\" of table \"home\", a field of type unsigned",
                "line 5, column 6: field \"count\" is integer but column \"count\" of table \"home\" is unsigned",
            ]
        );
        assert_eq!(p.lines, 2);
        assert_eq!(
            column_names(&p, 0),
            ["room", "temp", "count", "other", "time"]
        );
        // The catalog is per table.
        let p = parse_with("garage temp=1i", &catalog);
        assert_eq!(p.error_count, 0);
    }

    #[test]
    fn duplicate_tags_are_errors() {
        let p = parse("m,a=1,b=2,a=1 f=1\nm,a=1,a=2 f=1\nm,a=1 f=1\nm,a=1,b=1,a=1 f=1");
        assert_eq!(
            messages(&p),
            [
                "line 1, column 11: duplicate tag \"a\"",
                "line 2, column 7: duplicate tag \"a\"",
                "line 4, column 11: duplicate tag \"a\"",
            ]
        );
        assert_eq!(p.lines, 1);
    }

    #[test]
    fn duplicate_fields_keep_the_last_value() {
        let p = parse("m v=2,bananas=42,v=3,platanos=24\nm v=1,v=2,v=3\nm w=1i,w=2i");
        assert_eq!(p.error_count, 0, "{:?}", p.errors);
        assert_eq!(
            column_names(&p, 0),
            ["v", "bananas", "platanos", "w", "time"]
        );
        assert_eq!(floats(&p, 0, "v"), [Some(3.0), Some(3.0), None]);
        assert_eq!(floats(&p, 0, "bananas"), [Some(42.0), None, None]);
        let w = p.tables[0].batch.column(3).as_primitive::<Int64Type>();
        assert_eq!(w.iter().collect::<Vec<_>>(), [None, None, Some(2)]);
        assert_eq!(p.fields, 3 + 1 + 1);
    }

    #[test]
    fn duplicate_fields_of_different_types_are_errors() {
        let p = parse("m v=2i,v=3u\nm v=1\nm v=1,v=2i");
        assert_eq!(
            messages(&p),
            [
                "line 1, column 8: field \"v\" appears twice with different types (integer and unsigned)",
                "line 3, column 7: field \"v\" is integer but column \"v\" of table \"m\" is float",
            ]
        );
        assert_eq!(p.lines, 1);
    }

    #[test]
    fn multiple_tables_in_order_of_first_appearance() {
        let p = parse("cpu u=1\nmem f=1i\ncpu u=2\ndisk,d=a free=1u\nmem f=2i");
        assert_eq!(p.error_count, 0);
        let names: Vec<&str> = p.tables.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(names, ["cpu", "mem", "disk"]);
        let rows: Vec<usize> = p.tables.iter().map(|t| t.batch.num_rows()).collect();
        assert_eq!(rows, [2, 2, 1]);
        assert_eq!(floats(&p, 0, "u"), [Some(1.0), Some(2.0)]);
    }

    #[test]
    fn max_columns_per_table_counts_tags_fields_and_time() {
        let mut opts = ParseOptions::new(Precision::Nanosecond, 0);
        opts.max_columns_per_table = 4;
        let body = "m,t=1 a=1,b=2\nm c=1\nm a=2,b=3\nn a=1,b=2,c=3\nn d=1,e=1";
        let p = parse_lines(body.as_bytes(), &opts, &EmptySchema);
        assert_eq!(
            messages(&p),
            [
                "line 2, column 3: table \"m\" would have more than 4 columns",
                "line 5, column 3: table \"n\" would have more than 4 columns",
            ]
        );
        assert_eq!(p.lines, 3);
        assert_eq!(column_names(&p, 0), ["t", "a", "b", "time"]);
        assert_eq!(column_names(&p, 1), ["a", "b", "c", "time"]);
    }

    /// A line that would add a series past the quota is refused with the
    /// limit and the count; known series (in any tag order) still pass, and a
    /// later day of a series is recorded without counting.
    #[test]
    fn the_series_quota_counts_known_and_accepted_series_only() {
        use crate::series::{DAY_NS, LineAdmission, SeriesDay, SeriesLookup};
        use crate::series_hash::{series_id, tag_hash};
        let id = |table: &str, tags: &[(&str, &str)]| {
            let sum = tags
                .iter()
                .fold(0u64, |s, (k, v)| s.wrapping_add(tag_hash(k, v)));
            series_id(table, sum)
        };
        struct Known(u64);
        impl SeriesLookup for Known {
            fn last_day(&self, series: u64) -> Option<i32> {
                (series == self.0).then_some(0)
            }
            fn count(&self) -> usize {
                1
            }
            fn limit(&self) -> usize {
                3
            }
        }
        struct WithSeries<'a>(LineAdmission<'a>);
        impl LineCheck for WithSeries<'_> {
            fn column_type(&self, _: &str, _: &str) -> Option<ColumnType> {
                None
            }
            fn counts_series(&self) -> bool {
                true
            }
            fn check_series(&self, series: u64, time_ns: i64) -> Result<i64, SeriesQuota> {
                self.0.check(series, time_ns)
            }
            fn admit_series(&self, series: u64) {
                self.0.admit(series)
            }
        }
        let a = id("cpu", &[("host", "a")]);
        let body = format!(
            "cpu,host=a u=1 10\ncpu,host=b u=1 10\ncpu,host=c,dc=x u=1 10\ncpu,host=d u=1 10\n\
             cpu,dc=x,host=c u=2 20\nmem,host=a u=1 10\ncpu,host=b u=2 {}\ncpu,host=a u=3 {}\n\
             cpu,host=d u=1 30",
            2 * DAY_NS + 1,
            DAY_NS + 1
        );
        let opts = ParseOptions::new(Precision::Nanosecond, 0);
        let known = Known(a);
        let check = WithSeries(LineAdmission::new(&known));
        let p = parse_lines(body.as_bytes(), &opts, &check);
        let over = "column 1: new series would exceed the database's limit of 3 series (it has 3)";
        assert_eq!(messages(&p), [4, 6, 9].map(|n| format!("line {n}, {over}")));
        assert_eq!(p.lines, 6);
        // The refused line of `mem` did not add the table.
        assert_eq!(p.tables.len(), 1);
        let day = |series, day, new| SeriesDay { series, day, new };
        assert_eq!(
            check.0.into_found(),
            [
                day(id("cpu", &[("host", "b")]), 2, true),
                day(id("cpu", &[("dc", "x"), ("host", "c")]), 0, true),
                day(a, 1, false),
            ]
        );
        // Without a series quota every line is accepted.
        let p = parse_lines(body.as_bytes(), &opts, &EmptySchema);
        assert_eq!(p.lines, 9);
    }

    /// The database's quotas count what it has plus what the request adds;
    /// a rejected line adds nothing, so a later line may still fit.
    #[test]
    fn database_quotas_count_the_catalog_and_accepted_lines_only() {
        // The database has table `m` with `a` and `time`.
        let schema = Catalog([(("m", "a"), ColumnType::Float)].into_iter().collect());
        struct Counted(Catalog);
        impl LineCheck for Counted {
            fn column_type(&self, t: &str, c: &str) -> Option<ColumnType> {
                self.0.column_type(t, c)
            }
            fn table_count(&self) -> usize {
                1
            }
            fn column_count(&self, t: &str) -> Option<usize> {
                (t == "m").then_some(2)
            }
        }
        let mut opts = ParseOptions::new(Precision::Nanosecond, 0);
        opts.max_tables = 2;
        opts.max_table_columns = 3;
        let body = "m a=1,b=2\nm c=1\nn x=1\no x=1\nm b=3\nn y=1,z=1\nn y=2";
        let p = parse_lines(body.as_bytes(), &opts, &Counted(schema));
        assert_eq!(
            messages(&p),
            [
                "line 2, column 3: column \"c\" would exceed the limit of 3 columns of table \"m\" (it has 3, time included)",
                "line 4, column 1: table \"o\" would exceed the database's limit of 2 tables (it has 2)",
                "line 6, column 7: column \"z\" would exceed the limit of 3 columns of table \"n\" (it has 3, time included)",
            ]
        );
        assert_eq!(p.lines, 4);
        assert_eq!(column_names(&p, 0), ["a", "b", "time"]);
        assert_eq!(column_names(&p, 1), ["x", "y", "time"]);
    }

    #[test]
    fn remembered_series_give_the_same_rows_as_parsing() {
        // Lines 3, 5, 6 and 8 reuse the series of lines 1 and 2; some add
        // fields, one fails on a field, one sets a field named like a tag.
        let body = "m,a=1,b=x f=1 1\n\
                    m,b=y g=2i 2\n\
                    m,a=1,b=x f=3,g=4i 3\n\
                    n,a=1,b=x f=1 4\n\
                    m,b=y g=bad 5\n\
                    m,a=1,b=x a=1 6\n\
                    m,a=1,b=x time=1 7\n\
                    m,b=y  h=\"s\"  8\n\
                    m,a=1,b=x f=5";
        let p = parse(body);
        assert_eq!(
            messages(&p),
            [
                "line 5, column 9: invalid field value \"bad\" for field \"g\"",
                "line 6, column 11: field \"a\" is float but column \"a\" of table \"m\" is tag",
                "line 7, column 11: invalid field name: input field \"time\" on measurement \"m\" is invalid",
            ]
        );
        assert_eq!(column_names(&p, 0), ["a", "b", "f", "g", "h", "time"]);
        let a = [
            Some("1".into()),
            None,
            Some("1".into()),
            None,
            Some("1".into()),
        ];
        assert_eq!(tags(&p, 0, "a"), a);
        let b: Vec<Option<String>> = ["x", "y", "x", "y", "x"]
            .iter()
            .map(|v| Some(v.to_string()))
            .collect();
        assert_eq!(tags(&p, 0, "b"), b);
        assert_eq!(
            floats(&p, 0, "f"),
            [Some(1.0), None, Some(3.0), None, Some(5.0)]
        );
        let g = p.tables[0].batch.column(3).as_primitive::<Int64Type>();
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            [None, Some(2), Some(4), None, None]
        );
        assert_eq!(tags(&p, 1, "b"), [Some("x".into())]);
        // Each distinct value is in the dictionary once.
        let dict = p.tables[0].batch.column(1);
        let dict = dict
            .as_any()
            .downcast_ref::<DictionaryArray<Int32Type>>()
            .unwrap();
        assert_eq!(dict.values().len(), 2);
    }

    #[test]
    fn series_with_escaped_spaces_are_told_apart() {
        let p = parse("m,t=a\\ b f=1\nm,t=a\\\\x b=1\nm,t=a\\ b f=2\nm,t=a\\\\x b=2");
        assert_eq!(p.error_count, 0, "{:?}", p.errors);
        assert_eq!(
            tags(&p, 0, "t"),
            [
                Some("a b".into()),
                Some("a\\x".into()),
                Some("a b".into()),
                Some("a\\x".into())
            ]
        );
        assert_eq!(floats(&p, 0, "b"), [None, Some(1.0), None, Some(2.0)]);
    }

    #[test]
    fn same_name_is_equality() {
        let names = [
            "",
            "a",
            "ab",
            "abcdefg",
            "abcdefgh",
            "abcdefgi",
            "bbcdefgh",
            "usage_user",
            "usage_usez",
            "usage_guest_nice",
            "usage_guest_nicf",
            "usage_guest_nice!",
            "é✓",
        ];
        for a in names {
            for b in names {
                assert_eq!(same_name(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn many_new_columns_in_one_line() {
        let fields: Vec<String> = (0..500).map(|i| format!("f{i}={i}i")).collect();
        let mut body = format!("m {}", fields.join(","));
        body.push_str("\nm f1=1i,f499=2i,f1=3i");
        let p = parse(&body);
        assert_eq!(p.error_count, 0);
        assert_eq!(p.tables[0].batch.num_columns(), 501);
        let f1 = p.tables[0].batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(f1.values().to_vec(), [1, 3]);
    }
}
