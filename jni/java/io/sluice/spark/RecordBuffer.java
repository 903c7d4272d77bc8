package io.sluice.spark;

import java.io.OutputStream;
import java.util.Arrays;

/**
 * A map task's serialized records waiting to be pushed: their bytes back to back, and each
 * one's partition id and end offset. Every growth is first reserved from Spark's task
 * memory manager ({@link WriterMemory}); when none is granted, the complete records are
 * pushed to make room instead.
 */
final class RecordBuffer extends OutputStream {
  private static final int INITIAL_BYTES = 64 << 10;
  private static final int INITIAL_RECORDS = 1024;
  private static final int MAX_BYTES = Integer.MAX_VALUE - 16;

  private final long writer;
  private final WriterMemory memory;
  private byte[] data = new byte[INITIAL_BYTES];
  private int size;
  private int[] pids = new int[INITIAL_RECORDS];
  private int[] ends = new int[INITIAL_RECORDS];
  private int count;
  private long nativeNanos;

  RecordBuffer(long writer, WriterMemory memory) {
    this.writer = writer;
    this.memory = memory;
  }

  /**
   * The memory this buffer stands for: its arrays, plus the native writer's copy of them,
   * which it keeps from one write to the next (until {@link #shrink}).
   */
  static long footprint(long dataBytes, long records) {
    return 2 * (dataBytes + 8 * records);
  }

  long footprint() {
    return footprint(data.length, pids.length);
  }

  @Override
  public void write(int b) {
    ensure(1);
    data[size++] = (byte) b;
  }

  @Override
  public void write(byte[] b, int off, int len) {
    ensure(len);
    System.arraycopy(b, off, data, size, len);
    size += len;
  }

  /** Serialization streams close their output; this buffer outlives them. */
  @Override
  public void close() {}

  private void ensure(int more) {
    while ((long) size + more > data.length) {
      long need = (long) size + more;
      if (need > MAX_BYTES) {
        throw new SluiceException("a serialized record of " + (need - completeBytes())
            + " bytes exceeds the 2 GiB a batch can hold");
      }
      int doubled = (int) Math.min(MAX_BYTES, Math.max(need, 2L * data.length));
      // Reserving may make Spark call WriterMemory.spill, which pushes records: re-check.
      if (memory.reserve(footprint(doubled, pids.length))) {
        data = Arrays.copyOf(data, doubled);
      } else if (count > 0) {
        push();
      } else if (memory.reserve(footprint(need, pids.length))) {
        data = Arrays.copyOf(data, (int) need);
      } else if ((long) size + more > data.length) {
        throw new SluiceException("Spark's memory manager granted no memory for a record of "
            + need + " bytes");
      }
    }
  }

  private int completeBytes() {
    return count == 0 ? 0 : ends[count - 1];
  }

  /** Ends the record written since the previous call; it goes to partition {@code pid}. */
  void endRecord(int pid) {
    while (count == pids.length) {
      int grown = 2 * count;
      if (memory.reserve(footprint(data.length, grown))) {
        pids = Arrays.copyOf(pids, grown);
        ends = Arrays.copyOf(ends, grown);
      } else {
        push();
      }
    }
    pids[count] = pid;
    ends[count] = size;
    count++;
  }

  int size() {
    return size;
  }

  /** Nanoseconds spent in the native writer so far. */
  long nativeNanos() {
    return nativeNanos;
  }

  /**
   * Hands the complete records to the native writer, which has sent them to the server when
   * this returns. A record being written moves to the front.
   */
  void push() {
    if (count == 0) {
      return;
    }
    int end = ends[count - 1];
    long t = System.nanoTime();
    NativeBridge.write(writer, count, pids, ends, data, end);
    nativeNanos += System.nanoTime() - t;
    System.arraycopy(data, end, data, 0, size - end);
    size -= end;
    count = 0;
  }

  /**
   * Drops capacity beyond the initial size (and beyond a record being written), and the
   * native writer's copy of the largest write, which {@link #footprint} counts as one more
   * data array.
   */
  void shrink() {
    NativeBridge.trim(writer);
    if (data.length > INITIAL_BYTES) {
      data = Arrays.copyOf(data, Math.max(INITIAL_BYTES, size));
    }
    if (count == 0 && pids.length > INITIAL_RECORDS) {
      pids = new int[INITIAL_RECORDS];
      ends = new int[INITIAL_RECORDS];
    }
  }
}
