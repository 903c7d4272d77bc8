//! Stable counting sort of a batch's rows by partition id.
//!
//! The work per batch is O(rows + partitions touched), never O(P): the per-partition
//! counters persist across batches and only touched entries are reset. Each touched
//! partition gets a contiguous, input-ordered run of row indices.

use arrow_array::RecordBatch;

use crate::error::SplitError;
use crate::partitioner::Partitioner;

/// Where each partition's rows of one batch are, as row indices grouped by partition.
#[derive(Debug, Default, Clone)]
pub struct SplitIndices {
    /// Row indices, grouped by partition, in input order within a partition.
    indices: Vec<u32>,
    /// `(partition, start, end)` into `indices` for every partition with rows, ascending.
    runs: Vec<(u32, u32, u32)>,
}

impl SplitIndices {
    /// `(partition, rows)` for every partition that has rows in this batch, ascending.
    pub fn runs(&self) -> impl Iterator<Item = (u32, &[u32])> + '_ {
        self.runs
            .iter()
            .map(|&(p, s, e)| (p, &self.indices[s as usize..e as usize]))
    }

    pub fn num_runs(&self) -> usize {
        self.runs.len()
    }

    pub fn num_rows(&self) -> usize {
        self.indices.len()
    }
}

/// Partitions batches and groups their rows; scratch space is reused across batches.
#[derive(Debug)]
pub struct Splitter {
    partitioner: Partitioner,
    pids: Vec<u32>,
    /// Per-partition counters: zero between batches.
    counts: Vec<u32>,
    touched: Vec<u32>,
    split: SplitIndices,
}

impl Splitter {
    pub fn new(partitioner: Partitioner) -> Self {
        let n = partitioner.num_partitions() as usize;
        Self {
            partitioner,
            pids: Vec::new(),
            counts: vec![0; n],
            touched: Vec::new(),
            split: SplitIndices::default(),
        }
    }

    pub fn num_partitions(&self) -> u32 {
        self.partitioner.num_partitions()
    }

    /// Computes partition ids for `batch` and groups its rows by partition.
    pub fn split(&mut self, batch: &RecordBatch) -> Result<&SplitIndices, SplitError> {
        let mut split = std::mem::take(&mut self.split);
        let result = self.split_into(batch, &mut split);
        self.split = split;
        result.map(|()| &self.split)
    }

    /// [`Self::split`] into `out`, for a caller that keeps several splits.
    pub fn split_into(
        &mut self,
        batch: &RecordBatch,
        out: &mut SplitIndices,
    ) -> Result<(), SplitError> {
        let rows = batch.num_rows();
        if rows > u32::MAX as usize {
            return Err(SplitError::TooManyRows {
                rows,
                max: u32::MAX as usize,
            });
        }
        self.partitioner.partition(batch, &mut self.pids)?;
        group_rows(&self.pids, &mut self.counts, &mut self.touched, out);
        Ok(())
    }
}

/// Counting sort of row indices by `pids`. `counts` must be all zero on entry and is
/// left all zero.
fn group_rows(pids: &[u32], counts: &mut [u32], touched: &mut Vec<u32>, out: &mut SplitIndices) {
    let rows = 0..pids.len() as u32;
    counting_sort(pids, rows, counts, touched, &mut out.indices, &mut out.runs);
}

/// Stable counting sort of `items` (one per entry of `pids`) by partition id, in
/// O(items + partitions touched): `out` gets the items grouped by partition, in input
/// order within each, and `runs` each touched partition's `(partition, start, end)` in
/// `out`, ascending. `counts` (one per partition) must be all zero on entry and is left
/// all zero; `touched` is scratch.
pub(crate) fn counting_sort<T: Copy + Default>(
    pids: &[u32],
    items: impl Iterator<Item = T>,
    counts: &mut [u32],
    touched: &mut Vec<u32>,
    out: &mut Vec<T>,
    runs: &mut Vec<(u32, u32, u32)>,
) {
    touched.clear();
    for &p in pids {
        let c = &mut counts[p as usize];
        if *c == 0 {
            touched.push(p);
        }
        *c += 1;
    }
    touched.sort_unstable();
    runs.clear();
    let mut start = 0u32;
    for &p in touched.iter() {
        let n = counts[p as usize];
        runs.push((p, start, start + n));
        counts[p as usize] = start; // now the next free slot of p
        start += n;
    }
    out.clear();
    out.resize(pids.len(), T::default());
    for (item, &p) in items.zip(pids) {
        let slot = &mut counts[p as usize];
        out[*slot as usize] = item;
        *slot += 1;
    }
    for &p in touched.iter() {
        counts[p as usize] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_rows_stably_and_resets_counters() {
        let mut counts = vec![0u32; 10];
        let mut touched = Vec::new();
        let mut out = SplitIndices::default();
        group_rows(&[3, 1, 3, 9, 1, 3], &mut counts, &mut touched, &mut out);
        let runs: Vec<(u32, Vec<u32>)> = out.runs().map(|(p, r)| (p, r.to_vec())).collect();
        assert_eq!(
            runs,
            vec![(1, vec![1, 4]), (3, vec![0, 2, 5]), (9, vec![3])]
        );
        assert!(counts.iter().all(|&c| c == 0));
        group_rows(&[], &mut counts, &mut touched, &mut out);
        assert_eq!(out.num_runs(), 0);
    }
}
