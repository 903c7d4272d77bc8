package io.sluice.spark;

import java.io.OutputStream;
import java.util.Arrays;

/**
 * Serialized records waiting to be pushed: their bytes back to back, and each one's
 * partition id and end offset. Reused across batches of one map task.
 */
final class RecordBuffer extends OutputStream {
  private byte[] data = new byte[64 << 10];
  private int size;
  private int[] pids = new int[1024];
  private int[] ends = new int[1024];
  private int count;

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
    long need = (long) size + more;
    if (need > Integer.MAX_VALUE - 16) {
      throw new SluiceException("a batch of serialized records exceeds 2 GiB");
    }
    if (need > data.length) {
      data = Arrays.copyOf(data, (int) Math.min(Integer.MAX_VALUE - 16, Math.max(need, 2L * data.length)));
    }
  }

  /** Ends the record written since the previous call; it goes to partition {@code pid}. */
  void endRecord(int pid) {
    if (count == pids.length) {
      pids = Arrays.copyOf(pids, 2 * count);
      ends = Arrays.copyOf(ends, 2 * count);
    }
    pids[count] = pid;
    ends[count] = size;
    count++;
  }

  int size() {
    return size;
  }

  int count() {
    return count;
  }

  /** Hands the records to the native writer and empties the buffer. */
  void sendTo(long writer) {
    if (count > 0) {
      NativeBridge.write(writer, count, pids, ends, data, size);
    }
    size = 0;
    count = 0;
  }
}
