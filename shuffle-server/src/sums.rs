//! The writer's own counts of a map (rows and a checksum per partition), checked
//! against what the server stored before a commit, kept with the commit, and served
//! with the blocks so the reader checks them too.

use sluice_proto::PartitionSum;
use sluice_spill::WriterSum;

use crate::error::RequestError;

/// Checks the writer's sums against the rows stored for each partition; returns them
/// as the store keeps them. No sums: nothing to check (the writer gave none).
pub(crate) fn check(
    sums: &[PartitionSum],
    stored_rows: &[u64],
) -> Result<Vec<WriterSum>, RequestError> {
    if sums.is_empty() {
        return Ok(Vec::new());
    }
    let mut given = sums.iter().peekable();
    for (partition, &stored) in stored_rows.iter().enumerate() {
        let counted = match given.peek() {
            Some(s) if s.partition as usize == partition => given.next().map_or(0, |s| s.rows),
            _ => 0,
        };
        if counted != stored {
            return Err(RequestError::InvalidData(format!(
                "the writer counted {counted} rows of partition {partition}, the server \
                 received {stored}"
            )));
        }
    }
    if let Some(extra) = given.next() {
        return Err(RequestError::InvalidData(format!(
            "sums name partition {} of {}",
            extra.partition,
            stored_rows.len()
        )));
    }
    Ok(sums.iter().map(to_store).collect())
}

pub(crate) fn to_store(s: &PartitionSum) -> WriterSum {
    WriterSum {
        partition: s.partition,
        rows: s.rows,
        checksum: s.checksum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(partition: u32, rows: u64) -> PartitionSum {
        PartitionSum {
            partition,
            rows,
            checksum: rows * 7,
        }
    }

    #[test]
    fn sums_must_match_every_partition_stored() {
        assert!(check(&[], &[3, 0, 5]).unwrap().is_empty());
        let ok = check(&[sum(0, 3), sum(2, 5)], &[3, 0, 5]).unwrap();
        assert_eq!(ok.len(), 2);
        // A zero sum for an empty partition is fine too.
        assert!(check(&[sum(0, 3), sum(1, 0), sum(2, 5)], &[3, 0, 5]).is_ok());
        for bad in [
            vec![sum(0, 3)],
            vec![sum(0, 3), sum(2, 4)],
            vec![sum(0, 3), sum(1, 1), sum(2, 5)],
            vec![sum(0, 3), sum(2, 5), sum(3, 0)],
        ] {
            assert!(
                matches!(check(&bad, &[3, 0, 5]), Err(RequestError::InvalidData(_))),
                "{bad:?}"
            );
        }
    }
}
