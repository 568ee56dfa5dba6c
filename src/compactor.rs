//! Compaction: the small Parquet files that snapshots leave in a table's day
//! partition are merged into one larger file, sorted by (tags, time) and
//! deduplicated by point identity, and the catalog switches from the old files
//! to the new one in a single files-log entry (a query sees either set, never
//! both or neither; the old objects stay readable for the lifecycle's file
//! grace before they are deleted).
//!
//! The merge streams: every input file is read a batch at a time and merged
//! k-way by key, so memory holds one batch per input plus the output file,
//! whose size `max_input_bytes` bounds. A run of rows with the same key is
//! never split between output batches, so folding each batch folds every point.
//!
//! One compactor at a time in a cluster: every ingester runs the loop, and the
//! one holding the compactor lease (kept by heartbeat) does the work.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt64Array};
use arrow::compute::interleave;
use arrow::datatypes::{Schema, SchemaRef, UInt64Type};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::arrow::async_reader::{ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder};

use crate::catalog::{Catalog, CatalogError, ParquetFile, Table, table_columns};
use crate::clock::SharedClock;
use crate::dedup::{dedup, key_columns_by_kind};
use crate::lease::{LeaseError, Leases};
use crate::metrics::metrics;
use crate::parquet_files::StoreReader;
use crate::parquet_files::writer_properties;
use crate::schema::{SEQUENCE_COLUMN, TIME_COLUMN, arrow_schema, project, sequence_field};
use crate::store::{Put, Store, StoreError};

/// The files log the compactor writes its replacements to.
const WRITER: &str = "compactor";
/// Where its lease lives (not among the WAL leases).
const LEASE_ROOT: &str = "catalog/compactor-lease";
const LEASE: &str = "compactor";
/// Rows read from an input at once, and written per output batch.
const BATCH_ROWS: usize = 8192;

/// How long after a day's end its files are compacted whatever their number:
/// late points for it mostly arrive before then.
const COLD_AFTER_NS: i64 = 3_600_000_000_000;

/// Whether the day `partition` names (`yyyy-mm-dd`, UTC) ended at least
/// [`COLD_AFTER_NS`] before `now_ns`.
fn day_ended(partition: &str, now_ns: i64) -> bool {
    let Ok(day) = chrono::NaiveDate::parse_from_str(partition, "%Y-%m-%d") else {
        return false;
    };
    let end = day
        .succ_opt()
        .and_then(|next| next.and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_utc().timestamp_nanos_opt());
    end.and_then(|e| e.checked_add(COLD_AFTER_NS))
        .is_some_and(|cold| now_ns >= cold)
}

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("reading or writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct CompactorConfig {
    /// For ingesters: time between compaction rounds (one ingester of a
    /// cluster compacts at a time, by lease).
    #[arg(long = "compaction-interval", id = "compaction_interval", env = "INFLOW_COMPACTION_INTERVAL", value_parser = humantime::parse_duration, default_value = "1m")]
    pub interval: Duration,
    /// A day partition is compacted once it has this many files smaller than
    /// `--compaction-target-bytes` (at least 2), or two once the day ended
    /// over an hour ago.
    #[arg(
        long = "compaction-min-files",
        env = "INFLOW_COMPACTION_MIN_FILES",
        default_value_t = 10
    )]
    pub min_files: usize,
    /// Files at least this large are not compacted again.
    #[arg(long = "compaction-target-bytes", id = "compaction_target_bytes", env = "INFLOW_COMPACTION_TARGET_BYTES", default_value_t = 100 << 20)]
    pub target_bytes: u64,
    /// Most input bytes one compaction merges; bounds its memory.
    #[arg(long = "compaction-max-input-bytes", id = "compaction_max_input_bytes", env = "INFLOW_COMPACTION_MAX_INPUT_BYTES", default_value_t = 256 << 20)]
    pub max_input_bytes: u64,
    /// How long the compaction lease lives without a heartbeat: the
    /// ingesters' `--lease-ttl`.
    #[arg(skip = Duration::from_secs(10))]
    pub lease_ttl: Duration,
}

/// What a round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub partitions: usize,
    pub files_in: usize,
    pub rows_out: u64,
}

pub struct Compactor {
    catalog: Arc<Catalog>,
    store: Store,
    config: CompactorConfig,
    leases: Leases,
    /// Stamps the files a compaction removes (their grace starts then).
    clock: SharedClock,
}

impl Compactor {
    pub fn new(catalog: Arc<Catalog>, store: Store, mut config: CompactorConfig, me: &str) -> Self {
        // One file is already compacted.
        config.min_files = config.min_files.max(2);
        let leases = Leases::under(store.clone(), LEASE_ROOT, me, config.lease_ttl);
        Self {
            catalog,
            store,
            config,
            leases,
            clock: crate::clock::system(),
        }
    }

    /// This compactor stamping removals by `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs until aborted: every interval, claims the compactor lease if it
    /// is free, compacts (renewing the lease meanwhile) and releases it, so
    /// that an idle cluster costs one claim attempt per ingester and interval.
    pub async fn run(self) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let claimed = match self.leases.try_claim(LEASE).await {
                Ok(Some(claimed)) => claimed,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "compactor lease claim failed");
                    continue;
                }
            };
            let heartbeat = self.leases.keep_alive(LEASE, claimed.epoch);
            let round = self.round().await;
            let outcome = if round.is_ok() { "ok" } else { "error" };
            metrics()
                .compaction_rounds
                .with_label_values(&[outcome])
                .inc();
            match round {
                Ok(c) if c != Compacted::default() => tracing::info!(?c, "compaction round"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "compaction round failed; retrying next round")
                }
            }
            drop(heartbeat);
            if let Err(e) = self.leases.release(LEASE, claimed.epoch).await {
                tracing::warn!(error = %e, "compactor lease release failed");
            }
        }
    }

    /// Compacts every partition that has enough small files, and every day
    /// that ended over [`COLD_AFTER`] ago with two or more: a day left with
    /// fewer than `--compaction-min-files` snapshots would otherwise keep
    /// them, and every query over it would merge and fold their overlaps.
    pub async fn round(&self) -> Result<Compacted, CompactionError> {
        let state = self.catalog.refresh().await?;
        self.catalog.refresh_file_logs().await?;
        let mut partitions: BTreeMap<(u32, u32, String), Vec<ParquetFile>> = BTreeMap::new();
        for f in self.catalog.files() {
            if f.size_bytes < self.config.target_bytes {
                let key = (f.database, f.table, f.partition.clone());
                partitions.entry(key).or_default().push(f);
            }
        }
        let mut done = Compacted::default();
        for ((db_id, table_id, partition), mut files) in partitions {
            let Some(table) = state
                .database_by_id(db_id)
                .filter(|d| d.deleted_at_ns.is_none())
                .and_then(|d| d.table_by_id(table_id))
                .cloned()
            else {
                continue;
            };
            let ended = day_ended(&partition, self.clock.now_ns());
            if files.len() < self.config.min_files && !(ended && files.len() >= 2) {
                continue;
            }
            // Oldest data first, as much as the input bound allows.
            files.sort_by_key(|f| (f.min_time, f.path.clone()));
            let mut bytes = 0;
            let picked: Vec<ParquetFile> = files
                .into_iter()
                .take_while(|f| {
                    bytes += f.size_bytes;
                    bytes <= self.config.max_input_bytes
                })
                .collect();
            if picked.len() < 2 {
                continue;
            }
            let merged = self.compact(&table, &picked).await?;
            let removed = picked.iter().map(|f| f.path.clone()).collect();
            done.partitions += 1;
            done.files_in += picked.len();
            done.rows_out += merged.rows;
            self.catalog
                .replace_files(WRITER, vec![merged], removed, self.clock.now_ns())
                .await?;
        }
        Ok(done)
    }

    /// Merges `files` (one table, one day) into one new file, stored and durable
    /// before the catalog hears of it.
    async fn compact(
        &self,
        table: &Table,
        files: &[ParquetFile],
    ) -> Result<ParquetFile, CompactionError> {
        let started = std::time::Instant::now();
        let schema = file_schema(table);
        let (store, inputs) = (self.store.clone(), files.to_vec());
        let runtime = tokio::runtime::Handle::current();
        // Seconds of CPU: off the runtime's workers, at background priority.
        let merged =
            crate::background::run(move || runtime.block_on(merge_files(&store, &schema, &inputs)))
                .await?;
        let first = &files[0];
        let path = format!(
            "{}/{}/{}/compacted-{}.parquet",
            first.database,
            first.table,
            first.partition,
            uuid::Uuid::new_v4()
        );
        let size = merged.parquet.len() as u64;
        self.store
            .put_background(&Path::from(path.as_str()), merged.parquet, Put::Create)
            .await?;
        let m = metrics();
        m.compaction_duration
            .observe(started.elapsed().as_secs_f64());
        let bytes_in: u64 = files.iter().map(|f| f.size_bytes).sum();
        m.compaction_files
            .with_label_values(&["in"])
            .inc_by(files.len() as u64);
        m.compaction_files.with_label_values(&["out"]).inc();
        m.compaction_bytes
            .with_label_values(&["in"])
            .inc_by(bytes_in);
        m.compaction_bytes.with_label_values(&["out"]).inc_by(size);
        Ok(ParquetFile {
            path,
            database: first.database,
            table: first.table,
            partition: first.partition.clone(),
            min_time: merged.min_time,
            max_time: merged.max_time,
            rows: merged.rows,
            size_bytes: size,
        })
    }
}

/// One compaction's output file, encoded.
struct Merged {
    parquet: Bytes,
    rows: u64,
    min_time: i64,
    max_time: i64,
}

/// Reads `files` a batch at a time, merges them by key, folds each point's
/// versions, and encodes the result as one Parquet file.
async fn merge_files(
    store: &Store,
    schema: &SchemaRef,
    files: &[ParquetFile],
) -> Result<Merged, CompactionError> {
    let mut inputs = Vec::with_capacity(files.len());
    for f in files {
        inputs.push(Input::open(store, f, schema).await?);
    }
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, Arc::clone(schema), Some(writer_properties()))?;
    let mut merge = Merge::new(schema, inputs)?;
    let (mut rows, mut min_time, mut max_time) = (0u64, i64::MAX, i64::MIN);
    while let Some(batch) = merge.next_batch().await? {
        let batch = fold(&batch)?;
        let time = batch.column_by_name(TIME_COLUMN).map(|c| {
            c.as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                .clone()
        });
        if let Some(time) = time {
            min_time = min_time.min(arrow::compute::min(&time).unwrap_or(i64::MAX));
            max_time = max_time.max(arrow::compute::max(&time).unwrap_or(i64::MIN));
        }
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(Merged {
        parquet: Bytes::from(out),
        rows,
        min_time,
        max_time,
    })
}

/// A table's file schema: its columns as the catalog has them now (older
/// files lack newer columns: they read as null), then the sequence column.
fn file_schema(table: &Table) -> SchemaRef {
    let columns = arrow_schema(table_columns(table));
    let mut fields: Vec<_> = columns
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(sequence_field());
    Arc::new(Schema::new(fields))
}

/// One input file, read a batch at a time, with the sort keys of its
/// current batch.
struct Input {
    stream: ParquetRecordBatchStream<StoreReader>,
    schema: SchemaRef,
    batch: Option<RecordBatch>,
    keys: Option<Rows>,
    row: usize,
    /// Counts the batches read, so a merge knows when the current one changed.
    generation: u64,
}

impl Input {
    async fn open(
        store: &Store,
        file: &ParquetFile,
        schema: &SchemaRef,
    ) -> Result<Self, CompactionError> {
        let reader = StoreReader::new(store.object_store(), file);
        let stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await?
            .with_batch_size(BATCH_ROWS)
            .build()?;
        Ok(Self {
            stream,
            schema: Arc::clone(schema),
            batch: None,
            keys: None,
            row: 0,
            generation: 0,
        })
    }

    /// Makes sure a row is at hand; false at the end of the file.
    async fn ready(
        &mut self,
        converter: &RowConverter,
        key: &[usize],
    ) -> Result<bool, CompactionError> {
        while self.batch.as_ref().is_none_or(|b| self.row >= b.num_rows()) {
            match self.stream.next().await {
                None => {
                    self.batch = None;
                    return Ok(false);
                }
                Some(batch) => {
                    let batch = project(&batch?, &self.schema)?;
                    let columns: Vec<ArrayRef> =
                        key.iter().map(|&i| Arc::clone(batch.column(i))).collect();
                    self.keys = Some(converter.convert_columns(&columns)?);
                    self.batch = Some(batch);
                    self.row = 0;
                    self.generation += 1;
                }
            }
        }
        Ok(true)
    }
}

/// The k-way merge of the inputs by key.
struct Merge {
    inputs: Vec<Input>,
    converter: RowConverter,
    key: Vec<usize>,
    schema: SchemaRef,
}

impl Merge {
    fn new(schema: &SchemaRef, inputs: Vec<Input>) -> Result<Self, ArrowError> {
        let key = key_columns_by_kind(schema);
        let converter = RowConverter::new(
            key.iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )?;
        Ok(Self {
            inputs,
            converter,
            key,
            schema: Arc::clone(schema),
        })
    }

    /// The next batch of about [`BATCH_ROWS`] rows in key order, never
    /// ending inside a run of equal keys; `None` when every input is done.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, CompactionError> {
        // The batches the picked rows come from, and (batch, row) per row.
        let mut sources: Vec<RecordBatch> = Vec::new();
        // Per input: the generation of its batch in `sources`, and where.
        let mut source_of: Vec<Option<(u64, usize)>> = vec![None; self.inputs.len()];
        let mut picked: Vec<(usize, usize)> = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        loop {
            let mut best: Option<usize> = None;
            for i in 0..self.inputs.len() {
                if !self.inputs[i].ready(&self.converter, &self.key).await? {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some(b) => self.key_of(i) < self.key_of(b),
                };
                if better {
                    best = Some(i);
                }
            }
            let Some(i) = best else { break };
            let key = self.key_of(i).as_ref().to_vec();
            if picked.len() >= BATCH_ROWS && last_key.as_deref() != Some(key.as_slice()) {
                break;
            }
            let input = &mut self.inputs[i];
            let batch = input.batch.as_ref().expect("ready input has a batch");
            // A new batch of this input since it was last picked: a new source.
            let source = match source_of[i] {
                Some((generation, s)) if generation == input.generation => s,
                _ => {
                    sources.push(batch.clone());
                    source_of[i] = Some((input.generation, sources.len() - 1));
                    sources.len() - 1
                }
            };
            picked.push((source, input.row));
            input.row += 1;
            last_key = Some(key);
        }
        if picked.is_empty() {
            return Ok(None);
        }
        let columns = (0..self.schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    sources.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &picked)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?))
    }

    fn key_of(&self, input: usize) -> arrow::row::Row<'_> {
        let i = &self.inputs[input];
        i.keys.as_ref().expect("ready input has keys").row(i.row)
    }
}

/// Folds the versions of each point in a key-sorted batch, keeping each
/// point's latest sequence in the sequence column.
fn fold(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let seq_index = schema.index_of(SEQUENCE_COLUMN)?;
    let sequences: UInt64Array = batch.column(seq_index).as_primitive::<UInt64Type>().clone();
    let fields: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| i != seq_index)
        .collect();
    let data = batch.project(&fields)?;
    let key = key_columns_by_kind(&data.schema());
    let deduped = dedup(&data.schema(), &[data], &key, &[sequences])?;
    let mut columns = deduped.batch.columns().to_vec();
    columns.insert(seq_index, Arc::new(deduped.sequences));
    RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Querier;
    use crate::testing::{Buffered, catalog_with_table, chunk, persist, sql};

    /// A day with fewer files than `min_files` keeps them while it lasts and
    /// for an hour after; then they are merged (before, never: every query
    /// over that day merged and folded them).
    #[tokio::test]
    async fn an_ended_day_is_compacted_whatever_its_file_count() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        for seq in [1, 2] {
            let rows = chunk(seq, &[("a", Some(seq as f64), None, 10)]);
            persist(&catalog, &store, "ing", seq, rows).await;
        }
        let config = CompactorConfig {
            interval: Duration::from_secs(1),
            min_files: 10,
            target_bytes: 1 << 30,
            max_input_bytes: 1 << 30,
            lease_ttl: Duration::from_secs(10),
        };
        let clock = crate::clock::FixedClock::at(0);
        let compactor = Compactor::new(Arc::clone(&catalog), store.clone(), config, "test")
            .with_clock(clock.clone());
        const HOUR: i64 = 3_600_000_000_000;
        for now in [12 * HOUR, 24 * HOUR, 25 * HOUR - 1] {
            clock.set(now);
            assert_eq!(compactor.round().await.unwrap(), Compacted::default());
        }
        clock.set(25 * HOUR);
        let done = compactor.round().await.unwrap();
        assert_eq!((done.partitions, done.files_in, done.rows_out), (1, 2, 1));
        assert_eq!(catalog.files().len(), 1);
        assert!(!day_ended("day-1", i64::MAX));
        assert!(day_ended("1969-12-31", HOUR));
    }

    /// Small files with versions of the same points are merged into one file
    /// with one row per point; queries answer exactly as before; another
    /// reader of the catalog sees the switch.
    #[tokio::test]
    async fn small_files_merge_into_one_with_the_same_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let writes = [
            chunk(
                1,
                &[("a", Some(1.0), Some(1.0), 10), ("b", Some(2.0), None, 20)],
            ),
            chunk(2, &[("a", None, Some(5.0), 10)]),
            chunk(3, &[("c", Some(3.0), Some(3.0), 5)]),
            chunk(4, &[("b", Some(9.0), None, 20), ("a", Some(7.0), None, 30)]),
        ];
        for (n, c) in writes.into_iter().enumerate() {
            persist(&catalog, &store, "ing", n as u64 + 1, c).await;
        }
        let querier = Querier::new(
            Arc::clone(&catalog),
            store.clone(),
            Arc::new(Buffered(vec![])),
        );
        let before = sql(&querier, "SELECT * FROM m ORDER BY host, time").await;
        assert!(before.contains("| a    | 1.0 | 5.0 |"), "{before}");

        let config = CompactorConfig {
            interval: Duration::from_secs(1),
            min_files: 3,
            target_bytes: 1 << 30,
            max_input_bytes: 1 << 30,
            lease_ttl: Duration::from_secs(10),
        };
        let compactor = Compactor::new(Arc::clone(&catalog), store.clone(), config, "test");
        let done = compactor.round().await.unwrap();
        assert_eq!(
            done,
            Compacted {
                partitions: 1,
                files_in: 4,
                rows_out: 4
            }
        );
        let files = catalog.files();
        assert_eq!(files.len(), 1);
        assert!(files[0].path.contains("/compacted-"), "{files:?}");
        assert_eq!((files[0].min_time, files[0].max_time), (5, 30));
        assert_eq!(
            sql(&querier, "SELECT * FROM m ORDER BY host, time").await,
            before
        );
        let other = Catalog::load(store.clone()).await.unwrap();
        assert_eq!(other.files(), files);
        // The old files wait for the lifecycle's grace; nothing more to do.
        assert_eq!(catalog.removed_files(i64::MAX).len(), 4);
        assert_eq!(compactor.round().await.unwrap(), Compacted::default());
    }

    /// Input larger than one output batch: runs of one point are never split,
    /// so each point is folded once, whatever the batch boundaries.
    #[tokio::test]
    async fn many_rows_across_batch_boundaries_fold_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        // 3 files of the same 20,000 points: x from the first, y from the
        // second, x again from the third.
        let n = 20_000i64;
        let hosts: Vec<String> = (0..n).map(|i| format!("h{:05}", i % 5000)).collect();
        for (seq, (x, y)) in [(Some(1.0), None), (None, Some(2.0)), (Some(3.0), None)]
            .into_iter()
            .enumerate()
        {
            let rows: Vec<(&str, Option<f64>, Option<f64>, i64)> = (0..n)
                .map(|i| (hosts[i as usize].as_str(), x, y, i / 5000))
                .collect();
            persist(
                &catalog,
                &store,
                "ing",
                seq as u64 + 1,
                chunk(seq as u64 + 1, &rows),
            )
            .await;
        }
        let config = CompactorConfig {
            interval: Duration::from_secs(1),
            min_files: 2,
            target_bytes: 1 << 30,
            max_input_bytes: 1 << 30,
            lease_ttl: Duration::from_secs(10),
        };
        let compactor = Compactor::new(Arc::clone(&catalog), store.clone(), config, "test");
        let done = compactor.round().await.unwrap();
        assert_eq!(done.rows_out, n as u64);
        let querier = Querier::new(
            Arc::clone(&catalog),
            store.clone(),
            Arc::new(Buffered(vec![])),
        );
        let text = sql(
            &querier,
            "SELECT count(*) AS n, min(x) AS x0, max(x) AS x1, min(y) AS y0, max(y) AS y1 FROM m",
        )
        .await;
        assert!(text.contains("| 20000 | 3.0 | 3.0 | 2.0 | 2.0 |"), "{text}");
    }

    /// Files written before a column existed lack it: the merge reads them
    /// as null there, and the points keep every value they had.
    #[tokio::test]
    async fn files_from_before_a_new_column_merge_with_nulls() {
        use crate::catalog::{SchemaLimits, TableColumns};
        use crate::schema::ColumnType;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let catalog = Catalog::load(store.clone()).await.unwrap();
        catalog.create_database("db").await.unwrap();
        let add = |columns: Vec<(&'static str, ColumnType)>| TableColumns {
            table: "m",
            columns,
        };
        let old = vec![
            ("host", ColumnType::Tag),
            ("x", ColumnType::Float),
            ("time", ColumnType::Time),
        ];
        catalog
            .ensure_schema("db", &[add(old.clone())], SchemaLimits::UNLIMITED)
            .await
            .unwrap();
        // Written while the table had host and x only.
        let host = arrow::compute::cast(
            &arrow::array::StringArray::from(vec!["a", "b"]),
            &ColumnType::Tag.arrow_type(),
        )
        .unwrap();
        let batch = RecordBatch::try_new(
            arrow_schema(old),
            vec![
                host,
                Arc::new(arrow::array::Float64Array::from(vec![1.0, 2.0])),
                Arc::new(arrow::array::TimestampNanosecondArray::from(vec![10, 20])),
            ],
        )
        .unwrap();
        let first = Arc::new(crate::ingester::buffer::Chunk::new(1, 1, batch));
        persist(&catalog, &store, "ing", 1, first).await;
        // Then y appears.
        catalog
            .ensure_schema(
                "db",
                &[add(crate::testing::COLUMNS.to_vec())],
                SchemaLimits::UNLIMITED,
            )
            .await
            .unwrap();
        let second = chunk(
            2,
            &[("a", None, Some(5.0), 10), ("c", Some(3.0), Some(3.0), 30)],
        );
        persist(&catalog, &store, "ing", 2, second).await;
        let querier = Querier::new(
            Arc::clone(&catalog),
            store.clone(),
            Arc::new(Buffered(vec![])),
        );
        let before = sql(&querier, "SELECT * FROM m ORDER BY host, time").await;
        let config = CompactorConfig {
            interval: Duration::from_secs(1),
            min_files: 2,
            target_bytes: 1 << 30,
            max_input_bytes: 1 << 30,
            lease_ttl: Duration::from_secs(10),
        };
        let compactor = Compactor::new(Arc::clone(&catalog), store.clone(), config, "test");
        assert_eq!(compactor.round().await.unwrap().rows_out, 3);
        assert_eq!(catalog.files().len(), 1);
        let after = sql(&querier, "SELECT * FROM m ORDER BY host, time").await;
        assert_eq!(after, before);
        assert!(after.contains("| a    | 1.0 | 5.0 |"), "{after}");
        assert!(after.contains("| b    | 2.0 |     |"), "{after}");
    }
}
