//! Gather kernels: a column's rows copied, run by run, into their slots' buffers.

use arrow_array::{ArrayRef, UInt32Array};
use arrow_buffer::{i256, ArrowNativeType};
use arrow_data::ArrayData;

use super::source::{byte_source, native, ByteSource};
use super::store::Store;
use super::strings::{copy_value, longest_of, max_offset, with_chunk};
use super::{upcoming, Run};
use crate::error::SplitError;
use crate::prefetch;

fn gather_native<T: ArrowNativeType>(
    dst: &mut [Vec<T>],
    datas: &[ArrayData],
    runs: &[Run<'_>],
    ahead: usize,
    next_column: &mut prefetch::NextColumn<'_>,
) {
    let sources: Vec<&[T]> = datas.iter().map(native).collect();
    for (i, run) in runs.iter().enumerate() {
        if let Some(next) = upcoming(runs, i, ahead) {
            prefetch::tail(&dst[next.slot], next.slot_rows * std::mem::size_of::<T>());
        }
        next_column.step();
        let (d, src) = (&mut dst[run.slot], sources[run.source]);
        // Room for all of the slot's runs at once.
        d.reserve(run.slot_rows);
        d.extend(run.rows.iter().map(|&r| src[r as usize]));
    }
}

pub(super) fn gather_values(
    store: &mut Store,
    columns: &[&ArrayRef],
    datas: &[ArrayData],
    runs: &[Run<'_>],
    ahead: usize,
    next: &mut prefetch::NextColumn<'_>,
) -> Result<(), SplitError> {
    match store {
        Store::Null => {}
        Store::W1(dst) => gather_native::<u8>(dst, datas, runs, ahead, next),
        Store::W2(dst) => gather_native::<u16>(dst, datas, runs, ahead, next),
        Store::W4(dst) => gather_native::<u32>(dst, datas, runs, ahead, next),
        Store::W8(dst) => gather_native::<u64>(dst, datas, runs, ahead, next),
        Store::W16(dst) => gather_native::<i128>(dst, datas, runs, ahead, next),
        Store::W32(dst) => gather_native::<i256>(dst, datas, runs, ahead, next),
        Store::FixedBytes { width, data: dst } => {
            let w = *width;
            let sources: Vec<&[u8]> = datas
                .iter()
                .map(|d| &d.buffers()[0].as_slice()[d.offset() * w..(d.offset() + d.len()) * w])
                .collect();
            for run in runs {
                let (d, src) = (&mut dst[run.slot], sources[run.source]);
                for &r in run.rows {
                    let at = r as usize * w;
                    d.extend_from_slice(&src[at..at + w]);
                }
            }
        }
        Store::Bool(dst) => {
            let sources: Vec<arrow_array::BooleanArray> = datas
                .iter()
                .map(|d| arrow_array::BooleanArray::from(d.clone()))
                .collect();
            for run in runs {
                let (d, bits) = (&mut dst[run.slot], sources[run.source].values());
                for &r in run.rows {
                    d.append(bits.value(r as usize));
                }
            }
        }
        Store::Bytes32 { offsets, data: dst } => {
            gather_bytes(offsets, dst, datas, runs, ahead, next)?
        }
        Store::Bytes64 { offsets, data: dst } => {
            gather_bytes(offsets, dst, datas, runs, ahead, next)?
        }
        Store::Other(dst) => {
            for run in runs {
                let indices = UInt32Array::from(run.rows.to_vec());
                let column = columns[run.source].as_ref();
                dst[run.slot].push(arrow_select::take::take(column, &indices, None)?);
            }
        }
    }
    Ok(())
}

fn gather_bytes<O: ArrowNativeType>(
    offsets: &mut [Vec<O>],
    dst: &mut [Vec<u8>],
    datas: &[ArrayData],
    runs: &[Run<'_>],
    ahead: usize,
    next: &mut prefetch::NextColumn<'_>,
) -> Result<(), SplitError> {
    let sources: Vec<ByteSource<'_, O>> = datas.iter().map(byte_source).collect();
    with_chunk!(
        longest_of(&sources),
        gather_runs::<O>(offsets, dst, &sources, runs, ahead, next)
    )
}

/// `gather_bytes` with every value copied by [`copy_value::<N>`]. Kept out of line:
/// inlined, its eight instances made `gather_values` one huge function and the split
/// 3% slower at P = 200.
#[inline(never)]
fn gather_runs<O: ArrowNativeType, const N: usize>(
    offsets: &mut [Vec<O>],
    dst: &mut [Vec<u8>],
    sources: &[ByteSource<'_, O>],
    runs: &[Run<'_>],
    ahead: usize,
    next_column: &mut prefetch::NextColumn<'_>,
) -> Result<(), SplitError> {
    let max_offset = max_offset::<O>();
    let values = |o: &[O]| o[o.len() - 1].as_usize() - o[0].as_usize();
    let all_values: usize = sources.iter().map(|(o, _)| values(o)).sum();
    let all_rows: usize = sources.iter().map(|(o, _)| o.len() - 1).sum();
    let average = all_values / all_rows.max(1) + 1;
    for (i, run) in runs.iter().enumerate() {
        next_column.step();
        if let Some(next) = upcoming(runs, i, ahead) {
            let rows = next.slot_rows;
            prefetch::tail(&offsets[next.slot], rows * std::mem::size_of::<O>());
            prefetch::tail(&dst[next.slot], rows * average);
        }
        let (src_offsets, src) = sources[run.source];
        let value_len =
            |r: u32| src_offsets[r as usize + 1].as_usize() - src_offsets[r as usize].as_usize();
        let (o, d) = (&mut offsets[run.slot], &mut dst[run.slot]);
        // Everything fitting is the common case; otherwise count this run exactly.
        if d.len() + all_values > max_offset
            && d.len() + run.rows.iter().map(|&r| value_len(r)).sum::<usize>() > max_offset
        {
            return Err(SplitError::BufferOverflow);
        }
        // Room for all of the slot's runs at once (`slot_rows` is 0 on later runs).
        let rows = run.slot_rows.max(run.rows.len());
        d.reserve(rows * average);
        o.reserve(rows);
        for &r in run.rows {
            let start = src_offsets[r as usize].as_usize();
            copy_value::<N>(d, src, start, value_len(r));
            // Cannot overflow `O`: checked against max_offset for the whole run above.
            o.push(O::usize_as(d.len()));
        }
    }
    Ok(())
}
