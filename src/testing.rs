//! Test support shared by the unit tests of modules that read what snapshots
//! wrote (queries, compaction): a small table, chunks of it, and files
//! persisted as an ingester's snapshot would.

use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};

use crate::catalog::{Catalog, DbRef, SchemaLimits, TableColumns, table_columns};
use crate::ingester::buffer::Chunk;
use crate::ingester::read::{BufferFilter, buffered_batches};
use crate::ingester::snapshot::{day_files, merge, target_schema};
use crate::query::{BufferSource, Querier, QueryError};
use crate::schema::{ColumnType, arrow_schema};
use crate::store::{Put, Store};

/// Table `m` of database `db`: tag `host`, float fields `x` and `y`.
pub const COLUMNS: [(&str, ColumnType); 4] = [
    ("host", ColumnType::Tag),
    ("x", ColumnType::Float),
    ("y", ColumnType::Float),
    ("time", ColumnType::Time),
];

/// A store in `dir` whose catalog has table `m` of database `db`.
pub async fn catalog_with_table(dir: &std::path::Path) -> (Store, Arc<Catalog>) {
    let store = Store::local(dir).unwrap();
    let catalog = Catalog::load(store.clone()).await.unwrap();
    catalog.create_database("db").await.unwrap();
    let table = TableColumns {
        table: "m",
        columns: COLUMNS.to_vec(),
    };
    catalog
        .ensure_schema("db", &[table], SchemaLimits::UNLIMITED)
        .await
        .unwrap();
    (store, catalog)
}

/// One write of rows `(host, x, y, time)` at `sequence`.
pub fn chunk(sequence: u64, rows: &[(&str, Option<f64>, Option<f64>, i64)]) -> Arc<Chunk> {
    let host: StringArray = rows.iter().map(|r| Some(r.0)).collect();
    let host = arrow::compute::cast(&host, &ColumnType::Tag.arrow_type()).unwrap();
    let batch = RecordBatch::try_new(
        arrow_schema(COLUMNS),
        vec![
            host,
            Arc::new(rows.iter().map(|r| r.1).collect::<Float64Array>()),
            Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
            Arc::new(TimestampNanosecondArray::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    Arc::new(Chunk::new(sequence, sequence, batch))
}

/// A querier over `db.m` with one persisted row (host `a`, x 1.0, time 10)
/// and no buffered rows.
pub async fn querier_with_one_row(dir: &std::path::Path) -> crate::query::Querier {
    let (store, catalog) = catalog_with_table(dir).await;
    persist(
        &catalog,
        &store,
        "i1",
        1,
        chunk(1, &[("a", Some(1.0), None, 10)]),
    )
    .await;
    crate::query::Querier::new(catalog, store, Arc::new(Buffered(vec![])))
}

/// Persists `chunk` as ingester `owner`'s snapshot covering WAL segment
/// `covered` would: Parquet per day, registered in the catalog.
pub async fn persist(
    catalog: &Catalog,
    store: &Store,
    owner: &str,
    covered: u64,
    chunk: Arc<Chunk>,
) {
    let db = catalog.state().database("db").cloned().unwrap();
    let table = db.table("m").cloned().unwrap();
    let schema = target_schema(table_columns(&table), &[Arc::clone(&chunk)]);
    let max_sequence = chunk.sequence;
    let merged = merge(&schema, &[chunk]).unwrap();
    let mut files = Vec::new();
    for f in day_files(&merged).unwrap() {
        let path = format!(
            "{}/{}/{}/{owner}-{covered}.parquet",
            db.id, table.id, f.partition
        );
        store
            .put(&path.as_str().into(), f.bytes.clone(), Put::Overwrite)
            .await
            .unwrap();
        files.push(f.entry(path, db.id, table.id));
    }
    catalog
        .register_files(owner, covered, max_sequence, files)
        .await
        .unwrap();
}

/// An ingester's buffer holding `chunks`.
#[derive(Debug)]
pub struct Buffered(pub Vec<Arc<Chunk>>);

#[tonic::async_trait]
impl BufferSource for Buffered {
    async fn fetch(
        &self,
        _: DbRef<'_>,
        _: &str,
        filter: &BufferFilter,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        Ok(buffered_batches(&self.0, filter).unwrap().1)
    }
}

/// Runs `sql` on database `db`; the answer as a pretty-printed table.
pub async fn sql(querier: &Querier, sql: &str) -> String {
    use futures::TryStreamExt;
    let planned = querier.plan("db", sql).await.unwrap();
    let batches: Vec<RecordBatch> = planned
        .execute()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

/// Runs `test` on a new thread with a 2 MiB stack (tokio's default for its
/// workers) and its own runtime, whatever `RUST_MIN_STACK` says, for tests of
/// how deep a walk may go.
pub fn on_small_stack<F>(test: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(test())
        })
        .unwrap()
        .join()
        .unwrap();
}
