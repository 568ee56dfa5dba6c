//! Replay: a buffer rebuilt from the WAL segments of a prefix that no snapshot
//! covers, as an ingester does at start, after a fence, or when it takes over
//! another's prefix. Entries of deleted databases are left out here, so their
//! rows never reach a database that took the name.

use super::{decode_segment, delete_unless_fence, log_file, segment, segments};
use crate::catalog::{Catalog, CatalogState, DbId};
use crate::ingester::IngesterError;
use crate::ingester::buffer::{Buffer, Chunk, TableKey};
use crate::store::Store;

/// The chunks of a replayed segment, by database id; entries of a deleted
/// database are left out (their rows went with it).
pub(crate) fn replayed_chunks(
    segment: u64,
    entries: Vec<segment::ReplayedEntry>,
    state: &CatalogState,
) -> Result<Vec<(TableKey, Chunk)>, IngesterError> {
    let mut kept = Vec::with_capacity(entries.len());
    for e in entries {
        match entry_database(state, &e)? {
            Some(id) => kept.push((id, e)),
            None => tracing::info!(
                database = %e.database,
                database_id = e.database_id,
                table = %e.table,
                segment,
                "WAL entry of a deleted database skipped"
            ),
        }
    }
    let chunks = kept.into_iter().flat_map(move |(id, e)| {
        let key: TableKey = (id, e.table.into());
        let sequence = e.sequence;
        e.batches
            .into_iter()
            .map(move |batch| (key.clone(), Chunk::new(segment, sequence, batch)))
    });
    Ok(chunks.collect())
}

/// The database a WAL entry belongs to, `None` if it was deleted. An entry of
/// a release before ids were written names its database only: it belongs to
/// the live database of that name (what that release itself did; a name
/// deleted and created again before the upgrade cannot be told apart).
fn entry_database(
    state: &CatalogState,
    entry: &segment::ReplayedEntry,
) -> Result<Option<DbId>, IngesterError> {
    let id = match (entry.database_id, state.database(&entry.database)) {
        (0, Some(db)) => db.id,
        (0, None) if state.was_deleted(&entry.database) => return Ok(None),
        (0, None) => return Err(IngesterError::UnknownDatabase(entry.database.clone())),
        (id, _) => id,
    };
    Ok((!state.is_dropped(id)).then_some(id))
}

/// Rebuilds a buffer from the WAL segments of `prefix` (every epoch) that no
/// snapshot covers, deleting covered ones left by a crash between registration
/// and deletion. Returns the buffer and the next segment number.
pub async fn replay(
    prefix: &str,
    store: &Store,
    catalog: &Catalog,
) -> Result<(Buffer, u64), IngesterError> {
    let mut covered = catalog.covered_segment(prefix);
    // Fresh, to tell which entries belong to databases deleted meanwhile.
    let state = catalog.refresh().await?;
    let mut buffer = Buffer::default();
    let mut next = covered.map_or(0, |c| c + 1);
    let objects = segments(store, prefix);
    let mut segments = Vec::new();
    let mut logs = Vec::new();
    for meta in store.list(&objects.dir()).await? {
        if let Some(s) = objects.number(&meta.location) {
            segments.push((s, meta));
        } else if log_file::first_segment(&meta.location).is_some() {
            logs.push(meta.location);
        }
    }
    segments.sort_by_key(|(s, _)| *s);
    let mut replayed = 0;
    // Log files are deleted only once all they hold is covered (a later
    // snapshot does it), so one that vanished since the listing held nothing
    // to replay.
    for path in logs {
        let bytes = match store.get(&path).await {
            Err(crate::store::StoreError::NotFound(_)) => continue,
            bytes => bytes?,
        };
        for record in log_file::read(&path, &bytes)? {
            next = next.max(record.segment + 1);
            if covered.is_some_and(|c| record.segment <= c) {
                continue;
            }
            let (_, entries) = decode_segment(&path, record.body)?;
            let chunks = replayed_chunks(record.segment, entries, &state)?;
            buffer.insert_segment(record.segment, chunks);
            replayed += 1;
        }
    }
    for (segment, meta) in segments {
        next = next.max(segment + 1);
        if covered.is_some_and(|c| segment <= c) {
            delete_unless_fence(store, &meta).await?;
            continue;
        }
        let path = meta.location;
        let bytes = match store.get(&path).await {
            Ok(bytes) => bytes,
            // Deleted since the listing: only a snapshot that covers it may do
            // that (a fenced old holder finishing one), so it must be covered now.
            Err(crate::store::StoreError::NotFound(_)) => {
                catalog.refresh_files_of(prefix).await?;
                covered = catalog.covered_segment(prefix);
                if covered.is_some_and(|c| segment <= c) {
                    continue;
                }
                return Err(IngesterError::SegmentLost(path.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let (_, entries) = decode_segment(&path, bytes)?;
        buffer.insert_segment(segment, replayed_chunks(segment, entries, &state)?);
        replayed += 1;
    }
    if covered.is_some() {
        // A covered segment may have been replayed before the refresh found it so.
        drop(buffer.remove_up_to(covered.unwrap_or_default()));
    }
    if replayed > 0 {
        tracing::info!(
            prefix,
            segments = replayed,
            bytes = buffer.bytes(),
            "replayed WAL"
        );
    }
    Ok((buffer, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingester::wal;
    use crate::store::Put;
    use crate::testing::{catalog_with_table, chunk};
    use object_store::path::Path;

    /// A WAL written by an earlier build (a directory per epoch) replays.
    #[tokio::test]
    async fn segments_of_the_per_epoch_layout_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let batch = chunk(1, &[("a", Some(1.0), None, 1)]).batch.clone();
        // Written before entries carried ids: bound by name on replay.
        let entry = wal::EncodedEntry {
            database_id: 0,
            database: "db".into(),
            table: "m".into(),
            sequence: 1,
            ipc: wal::encode_batch(&batch).unwrap(),
        };
        let old = Path::from(format!("wal/ing-0/{:020}/{:020}", 3, 12));
        let body = wal::encode_segment("ing-0", 3, 12, &[entry]);
        store.put(&old, body, Put::Create).await.unwrap();
        let (buffer, next) = replay("ing-0", &store, &catalog).await.unwrap();
        assert_eq!(next, 13);
        assert_eq!(buffer.last_segment(), Some(12));
        let key: TableKey = (1, "m".into());
        assert_eq!(buffer.table_chunks(&key)[0].batch, batch);
    }

    /// Which database a replayed entry belongs to: its id unless that was
    /// deleted; for an entry of a release before ids, the live database of
    /// its name (none if that name was deleted). A name the catalog never
    /// had is an error, not a guess.
    #[tokio::test]
    async fn replayed_entries_belong_to_their_id_or_to_their_name_before_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, catalog) = catalog_with_table(dir.path()).await;
        let entry = |database_id, database: &str| wal::ReplayedEntry {
            database_id,
            database: database.into(),
            table: "m".into(),
            sequence: 1,
            batches: vec![],
        };
        let of = |state: &CatalogState, id, name| entry_database(state, &entry(id, name)).unwrap();
        let state = catalog.state();
        assert_eq!(
            (of(&state, 1, "db"), of(&state, 0, "db")),
            (Some(1), Some(1))
        );
        let unknown = entry_database(&state, &entry(0, "never"));
        assert!(matches!(unknown, Err(IngesterError::UnknownDatabase(_))));
        catalog.delete_database("db", 1).await.unwrap();
        let state = catalog.state();
        assert_eq!((of(&state, 1, "db"), of(&state, 0, "db")), (None, None));
        assert_eq!(catalog.create_database("db").await.unwrap(), 2);
        let state = catalog.state();
        assert_eq!(of(&state, 1, "db"), None, "the deleted id stays dropped");
        assert_eq!(of(&state, 2, "db"), Some(2));
        assert_eq!(of(&state, 0, "db"), Some(2), "by name: the live database");
    }
}
