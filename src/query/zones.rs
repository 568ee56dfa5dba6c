//! Where in time two sources of a table can hold the same point.
//!
//! A point is its tags and time, so only sources whose time ranges overlap
//! can both hold it, and only at a time both cover. Live data leaves chains
//! of files whose ranges overlap a little at each end (a write that arrived
//! after the next snapshot began), so grouping whole files by overlap would
//! fold nearly everything. Instead the overlap *zones* are found, the times
//! covered by two sources or more: rows inside a zone are merged and folded,
//! rows outside every zone are read as they are.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Schema, TimestampNanosecondType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

/// Inclusive `[min, max]` time spans, in nanoseconds.
pub type Span = (i64, i64);

/// The maximal spans covered by at least two of `spans`, sorted, disjoint
/// and not adjacent.
pub fn zones(spans: &[Span]) -> Vec<Span> {
    // +1 where a span starts, -1 just past where it ends; i128 so that the
    // end of a span at i64::MAX has a place.
    let mut events: Vec<(i128, i32)> = spans
        .iter()
        .flat_map(|&(min, max)| [(min as i128, 1), (max as i128 + 1, -1)])
        .collect();
    events.sort_unstable();
    let mut out: Vec<Span> = Vec::new();
    let mut depth = 0;
    let mut start = 0i128;
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        let before = depth;
        while i < events.len() && events[i].0 == at {
            depth += events[i].1;
            i += 1;
        }
        if before < 2 && depth >= 2 {
            start = at;
        } else if before >= 2 && depth < 2 {
            let span = (start as i64, (at - 1) as i64);
            match out.last_mut() {
                Some(last) if last.1 as i128 + 1 >= start => last.1 = span.1,
                _ => out.push(span),
            }
        }
    }
    out
}

/// Whether `span` lies wholly inside `zones` (sorted, disjoint, merged).
pub fn covered(span: Span, zones: &[Span]) -> bool {
    zones.iter().any(|z| z.0 <= span.0 && span.1 <= z.1)
}

/// Whether `span` meets any of `zones`.
pub fn meets(span: Span, zones: &[Span]) -> bool {
    zones.iter().any(|z| z.0 <= span.1 && span.0 <= z.1)
}

/// `time` inside (or outside) any of sorted, disjoint `zones`: a binary
/// search per row, where a chain of files makes as many zones as files.
#[derive(Debug, Clone)]
pub struct InZones {
    time: Arc<dyn PhysicalExpr>,
    zones: Arc<[Span]>,
    /// `false`: true for the rows outside every zone.
    inside: bool,
}

impl InZones {
    pub fn new(time: Arc<dyn PhysicalExpr>, zones: Arc<[Span]>, inside: bool) -> Self {
        Self {
            time,
            zones,
            inside,
        }
    }

    fn contains(&self, t: i64) -> bool {
        let i = self.zones.partition_point(|z| z.1 < t);
        i < self.zones.len() && self.zones[i].0 <= t
    }
}

impl PartialEq for InZones {
    fn eq(&self, other: &Self) -> bool {
        self.time.as_ref() == other.time.as_ref()
            && self.zones == other.zones
            && self.inside == other.inside
    }
}

impl Eq for InZones {}

impl Hash for InZones {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.time.as_ref().hash(state);
        self.zones.hash(state);
        self.inside.hash(state);
    }
}

impl fmt::Display for InZones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.inside { "in" } else { "outside" };
        write!(f, "{} {how} {} overlap zones", self.time, self.zones.len())
    }
}

impl PhysicalExpr for InZones {
    fn data_type(&self, _: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, _: &Schema) -> Result<bool> {
        Ok(false)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let time = self.time.evaluate(batch)?.into_array(batch.num_rows())?;
        let time = time
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| DataFusionError::Internal("overlap zones need a time column".into()))?;
        let keep: BooleanArray = time
            .values()
            .iter()
            .map(|&t| Some(self.contains(t) == self.inside))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(keep)))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.time]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "overlap zones take one child".into(),
            ));
        }
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            Arc::clone(&self.zones),
            self.inside,
        )))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampNanosecondArray;
    use arrow::datatypes::{Field, TimeUnit};
    use datafusion::physical_expr::expressions::Column;

    #[test]
    fn zones_are_where_two_spans_meet() {
        // A chain: each file overlaps the next at its end.
        let chain = [(0, 10), (8, 20), (20, 30), (31, 40)];
        assert_eq!(zones(&chain), vec![(8, 10), (20, 20)]);
        // One span inside another, and a third over both: merged.
        assert_eq!(zones(&[(0, 100), (10, 20), (15, 50)]), vec![(10, 50)]);
        // Touching zones merge; apart they stay apart.
        assert_eq!(zones(&[(0, 5), (3, 9), (6, 12)]), vec![(3, 9)]);
        assert_eq!(
            zones(&[(0, 5), (0, 5), (7, 9), (7, 9)]),
            vec![(0, 5), (7, 9)]
        );
        assert_eq!(
            zones(&[(i64::MIN, i64::MAX), (5, i64::MAX)]),
            vec![(5, i64::MAX)]
        );
        assert!(zones(&[(0, 1), (2, 3)]).is_empty());
        assert!(zones(&[]).is_empty());
        let z = zones(&chain);
        assert!(covered((20, 20), &z) && !covered((8, 20), &z));
        assert!(meets((0, 8), &z) && !meets((11, 19), &z));
    }

    #[test]
    fn rows_split_by_zone() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        )]));
        let times = TimestampNanosecondArray::from(vec![0, 5, 8, 10, 11, 20, 21]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(times)]).unwrap();
        let zones: Arc<[Span]> = Arc::from(vec![(5, 8), (10, 10), (20, 20)]);
        let time = Arc::new(Column::new("time", 0));
        let eval = |inside| {
            let e = InZones::new(time.clone(), Arc::clone(&zones), inside);
            let v = e.evaluate(&batch).unwrap().into_array(7).unwrap();
            v.as_boolean()
                .iter()
                .map(|b| b.unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(eval(true), [false, true, true, true, false, true, false]);
        assert_eq!(eval(false), [true, false, false, false, true, false, true]);
    }
}
