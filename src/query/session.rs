//! The DataFusion session a query plans in: one base state per querier (its
//! configuration, functions and optimizer rules), cloned for each query with
//! the query's own catalog.
//!
//! Building a `SessionState` registers several hundred functions and every
//! planner rule; a dashboard's small query paid that on each refresh. A clone
//! shares them by `Arc`. What must not be shared is the catalog (one query's
//! database, as the catalog had it when the query began), so each clone gets
//! its own [`DatabaseCatalog`]: `public.iox` holds the database's tables,
//! each built when the planner first asks for it, so a query over one table
//! of a database with hundreds builds one provider, not hundreds.

use std::sync::Arc;

use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::run_fold::FoldRuns;
use super::table::{InflowTable, Sources};
use super::{CATALOG_NAME, SCHEMA_NAME};
use crate::catalog::Database;

/// The state every query of a querier starts from.
#[derive(Clone)]
pub struct BaseSession {
    state: SessionState,
}

impl std::fmt::Debug for BaseSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseSession").finish_non_exhaustive()
    }
}

impl BaseSession {
    /// The configuration every query shares, over `runtime` (its memory pool
    /// and object store).
    pub fn new(runtime: Arc<RuntimeEnv>) -> Self {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG_NAME, SCHEMA_NAME)
            .with_create_default_catalog_and_schema(false);
        // inflow writes no bloom filters (`parquet_files::writer_properties`):
        // looking for them cost every file opened a probe for nothing.
        config.options_mut().execution.parquet.bloom_filter_on_read = false;
        if let MemoryLimit::Finite(limit) = runtime.memory_pool.memory_limit() {
            let reservation = sort_reservation(limit, config.target_partitions());
            config = config.with_sort_spill_reservation_bytes(reservation);
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            // After DataFusion's rules: it rewrites the partial aggregates
            // they placed.
            .with_physical_optimizer_rule(Arc::new(FoldRuns))
            .build();
        Self { state }
    }

    /// The runtime every query shares: its memory pool and object store.
    pub fn runtime(&self) -> &Arc<RuntimeEnv> {
        self.state.runtime_env()
    }

    /// The names of the physical optimizer rules, in order.
    #[cfg(test)]
    pub(super) fn physical_rules(&self) -> Vec<String> {
        self.state
            .physical_optimizers()
            .iter()
            .map(|r| r.name().to_string())
            .collect()
    }

    /// A session for one query over `db`'s tables.
    pub fn context(&self, db: &Arc<Database>, sources: &Arc<Sources>) -> SessionContext {
        let mut state = self.state.clone();
        state.register_catalog_list(Arc::new(DatabaseCatalog {
            schema: Arc::new(DatabaseSchema {
                db: Arc::clone(db),
                sources: Arc::clone(sources),
            }),
        }));
        SessionContext::new_with_state(state)
    }
}

/// DataFusion reserves `sort_spill_reservation_bytes` (10 MiB by default) per
/// sorting partition before it reads a row, so against a small pool a tiny
/// sort fails or succeeds by how many partitions the plan got. A quarter of
/// the pool, shared by the partitions, leaves the rest for data.
pub(super) fn sort_reservation(pool_bytes: usize, partitions: usize) -> usize {
    let default = SessionConfig::new()
        .options()
        .execution
        .sort_spill_reservation_bytes;
    default.min(pool_bytes / (4 * partitions.max(1)))
}

/// One catalog, `public`, with one schema, `iox`: the database's tables.
/// Doubles as the list of catalogs, since a query sees only this one.
#[derive(Debug)]
struct DatabaseCatalog {
    schema: Arc<DatabaseSchema>,
}

impl CatalogProviderList for DatabaseCatalog {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        // Never called: DDL is refused before planning reaches the catalog.
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        vec![CATALOG_NAME.to_string()]
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == CATALOG_NAME).then(|| {
            Arc::new(DatabaseCatalog {
                schema: Arc::clone(&self.schema),
            }) as Arc<dyn CatalogProvider>
        })
    }
}

impl CatalogProvider for DatabaseCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![SCHEMA_NAME.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == SCHEMA_NAME).then(|| Arc::clone(&self.schema) as Arc<dyn SchemaProvider>)
    }
}

/// The database's tables, as the catalog had them when the query began.
#[derive(Debug)]
struct DatabaseSchema {
    db: Arc<Database>,
    sources: Arc<Sources>,
}

#[async_trait::async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        self.db.tables().map(|t| t.name.clone()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(self.db.table(name).map(|table| {
            Arc::new(InflowTable::new(
                Arc::clone(&self.db),
                Arc::clone(table),
                &self.sources,
            )) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.db.table(name).is_some()
    }
}
