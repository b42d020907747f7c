//! A late model's batch as its graph reads it: each distinct query once, every document, and
//! which query each pair belongs to.
//!
//! The batcher knows only (query, document) pairs, one work item each, from any number of
//! requests. Here a batch of them becomes the late graph's five inputs: `query_ids` and
//! `query_mask` (`[queries, query_length]`) hold the distinct queries, `input_ids` and
//! `attention_mask` (`[pairs, document_length]`) the documents, and `query_index` (`[pairs]`)
//! each pair's row in `query_ids`, so a query's tower runs once per batch however many of its
//! documents the batch holds. Queries are the same when they are the same allocation (the
//! pairs of one request share it, the common case, checked first) or hold the same ids (two
//! requests with one query). Rows are right-padded with the pad id and masked. No ONNX
//! Runtime here, so the layout is unit-tested and fuzzed on its own.

use std::collections::HashMap;
use std::sync::Arc;

use super::PreparedPair;

/// The five tensors of a late graph, flattened row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TowerBatch {
    /// Distinct queries in the batch (rows of `query_ids`).
    pub queries: usize,
    /// Width of the query rows (the longest distinct query).
    pub query_width: usize,
    pub query_ids: Vec<i64>,
    pub query_mask: Vec<i64>,
    /// Pairs in the batch (rows of `input_ids`).
    pub pairs: usize,
    /// Width of the document rows (the longest document).
    pub document_width: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    /// Each pair's row in `query_ids`.
    pub query_index: Vec<i64>,
}

/// Why a batch cannot be laid out as towers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pair {0} of the batch has no query of its own: it was not prepared by a late model")]
pub struct NoQuery(pub usize);

/// Lays out `batch` (pairs prepared by a late model) for the graph, padding with `pad_id`.
pub fn layout(batch: &[&PreparedPair], pad_id: i64) -> Result<TowerBatch, NoQuery> {
    // Distinct queries, in order of first appearance.
    let mut distinct: Vec<&Arc<[i64]>> = Vec::new();
    let mut by_ids: HashMap<&[i64], usize> = HashMap::new();
    let mut query_index = Vec::with_capacity(batch.len());
    let mut last: Option<(&Arc<[i64]>, usize)> = None;
    for (position, pair) in batch.iter().enumerate() {
        let query = pair.query_ids.as_ref().ok_or(NoQuery(position))?;
        let row = match last {
            Some((previous, row)) if Arc::ptr_eq(previous, query) => row,
            _ => *by_ids.entry(&query[..]).or_insert_with(|| {
                distinct.push(query);
                distinct.len() - 1
            }),
        };
        last = Some((query, row));
        query_index.push(row as i64);
    }
    let (query_width, query_ids, query_mask) = padded(distinct.iter().map(|q| &q[..]), pad_id);
    let (document_width, input_ids, attention_mask) =
        padded(batch.iter().map(|p| &p.input_ids[..]), pad_id);
    Ok(TowerBatch {
        queries: distinct.len(),
        query_width,
        query_ids,
        query_mask,
        pairs: batch.len(),
        document_width,
        input_ids,
        attention_mask,
        query_index,
    })
}

/// Rows right-padded to the longest: (width, ids, mask).
fn padded<'a>(
    rows: impl Iterator<Item = &'a [i64]> + Clone,
    pad_id: i64,
) -> (usize, Vec<i64>, Vec<i64>) {
    let width = rows.clone().map(<[i64]>::len).max().unwrap_or(0);
    let count = rows.clone().count();
    let mut ids = vec![pad_id; count * width];
    let mut mask = vec![0i64; count * width];
    for (r, row) in rows.enumerate() {
        let start = r * width;
        ids[start..start + row.len()].copy_from_slice(row);
        mask[start..start + row.len()].fill(1);
    }
    (width, ids, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(query: &Arc<[i64]>, document: &[i64]) -> PreparedPair {
        PreparedPair {
            input_ids: document.to_vec(),
            type_ids: Vec::new(),
            query_ids: Some(query.clone()),
            truncated: false,
        }
    }

    #[test]
    fn each_distinct_query_is_laid_out_once() {
        let a: Arc<[i64]> = Arc::from(vec![0, 5, 6, 2]);
        let b: Arc<[i64]> = Arc::from(vec![0, 7, 2]);
        // The same ids as `a` in another allocation (another request with the same query).
        let a2: Arc<[i64]> = Arc::from(vec![0, 5, 6, 2]);
        let pairs = [
            pair(&a, &[0, 10, 2]),
            pair(&b, &[0, 11, 12, 13, 2]),
            pair(&a, &[0, 14, 2]),
            pair(&a2, &[0, 15, 2]),
        ];
        let batch: Vec<&PreparedPair> = pairs.iter().collect();
        let t = layout(&batch, 1).unwrap();
        assert_eq!((t.queries, t.query_width), (2, 4));
        assert_eq!(t.query_ids, vec![0, 5, 6, 2, 0, 7, 2, 1]);
        assert_eq!(t.query_mask, vec![1, 1, 1, 1, 1, 1, 1, 0]);
        assert_eq!(t.query_index, vec![0, 1, 0, 0]);
        assert_eq!((t.pairs, t.document_width), (4, 5));
        assert_eq!(&t.input_ids[..10], &[0, 10, 2, 1, 1, 0, 11, 12, 13, 2]);
        assert_eq!(&t.attention_mask[..10], &[1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn a_pair_without_its_query_is_refused() {
        let a: Arc<[i64]> = Arc::from(vec![0, 5, 2]);
        let mut lone = pair(&a, &[0, 3, 2]);
        lone.query_ids = None;
        let ok = pair(&a, &[0, 4, 2]);
        assert_eq!(layout(&[&ok, &lone], 1), Err(NoQuery(1)));
    }
}
