package io.sluice.spark;

import org.apache.spark.TaskContext;
import org.apache.spark.memory.MemoryConsumer;
import org.apache.spark.memory.MemoryMode;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The execution memory behind a map task's {@link RecordBuffer}, reserved from the task's
 * memory manager in chunks. When Spark needs memory back, {@link #spill} pushes the buffered
 * records to the server and returns what the buffer no longer holds; Spark counts it as the
 * task's spilled memory.
 */
final class WriterMemory extends MemoryConsumer {
  private static final Logger LOG = LoggerFactory.getLogger(WriterMemory.class);
  static final long CHUNK = 2L << 20;

  private final TaskContext context;
  /** Spark calls spill from the task's thread; from another, the buffer is not ours to touch. */
  private final Thread owner = Thread.currentThread();
  private RecordBuffer buffer;

  WriterMemory(TaskContext context) {
    super(context.taskMemoryManager(), MemoryMode.ON_HEAP);
    this.context = context;
  }

  /** Starts accounting for the buffer (its initial arrays included). */
  void attach(RecordBuffer buffer) {
    this.buffer = buffer;
    reserve(buffer.footprint());
  }

  /** Makes the reservation cover {@code bytes}; false when Spark grants less. */
  boolean reserve(long bytes) {
    long want = bytes - getUsed();
    if (want > 0) {
      acquireMemory((want + CHUNK - 1) / CHUNK * CHUNK);
    }
    return getUsed() >= bytes;
  }

  @Override
  public long spill(long size, MemoryConsumer trigger) {
    if (buffer == null || Thread.currentThread() != owner) {
      return 0;
    }
    long before = getUsed();
    buffer.push();
    buffer.shrink();
    long keep = (buffer.footprint() + CHUNK - 1) / CHUNK * CHUNK;
    if (before > keep) {
      freeMemory(before - keep);
    }
    long freed = before - getUsed();
    if (freed > 0) {
      context.taskMetrics().incMemoryBytesSpilled(freed);
      LOG.info("pushed buffered records early to free {} bytes of execution memory (asked by {})",
          freed, trigger == this ? "this writer" : trigger);
    }
    return freed;
  }

  /** Returns all memory; the buffer is no longer used. */
  void release() {
    buffer = null;
    if (getUsed() > 0) {
      freeMemory(getUsed());
    }
  }
}
