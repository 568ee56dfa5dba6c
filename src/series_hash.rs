//! Stable series hashes: a series is a table and a tag set, and its id is the
//! same in every process and release, so the parser, the series quota and
//! the router's spreading all agree on it. Kept apart so each of them can use
//! it without importing the others.

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;

use crate::schema::ColumnType;

/// FNV-1a: stable across processes and releases, unlike `DefaultHasher`.
#[derive(Clone, Copy)]
pub struct Fnv(pub u64);

impl Fnv {
    pub const START: Self = Self(0xcbf2_9ce4_8422_2325);

    pub fn bytes(mut self, bytes: &[u8]) -> Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
}

/// Spreads the bits of a sum of tag hashes (a finaliser, as in splitmix64).
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 31;
    h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

/// One tag of a series. A series' tag hashes are summed, so their order does
/// not matter and a null tag adds nothing.
pub fn tag_hash(key: &str, value: &str) -> u64 {
    Fnv::START
        .bytes(key.as_bytes())
        .bytes(&[0])
        .bytes(value.as_bytes())
        .0
}

/// A series' id within its database.
pub fn series_id(table: &str, tag_sum: u64) -> u64 {
    mix(Fnv::START.bytes(table.as_bytes()).0 ^ mix(tag_sum))
}

/// The sum of the tag hashes of every row of `batch` (tags are its `Tag` columns).
pub fn tag_sums(batch: &RecordBatch) -> Vec<u64> {
    let mut sums = vec![0u64; batch.num_rows()];
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if ColumnType::from_arrow_field(field) != Some(ColumnType::Tag) {
            continue;
        }
        let name = field.name();
        if let Some(dict) = column.as_dictionary_opt::<Int32Type>() {
            // Hash each distinct value once, then look rows up by key.
            let values = dict.values().as_string::<i32>();
            let value_hashes: Vec<u64> = (0..values.len())
                .map(|i| tag_hash(name, values.value(i)))
                .collect();
            for (row, key) in dict.keys().iter().enumerate() {
                if let Some(k) = key {
                    sums[row] = sums[row].wrapping_add(value_hashes[k as usize]);
                }
            }
        } else if let Some(strings) = column.as_string_opt::<i32>() {
            for (row, v) in strings.iter().enumerate() {
                if let Some(v) = v {
                    sums[row] = sums[row].wrapping_add(tag_hash(name, v));
                }
            }
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_id_ignores_tag_order_and_names_the_table() {
        let a = tag_hash("host", "a").wrapping_add(tag_hash("region", "eu"));
        let b = tag_hash("region", "eu").wrapping_add(tag_hash("host", "a"));
        assert_eq!(series_id("cpu", a), series_id("cpu", b));
        assert_ne!(series_id("cpu", a), series_id("mem", a));
        assert_ne!(tag_hash("host", "ab"), tag_hash("hosta", "b"));
    }
}
