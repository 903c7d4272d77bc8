package io.sluice.spark;

import java.util.List;
import org.apache.spark.Partitioner;
import org.apache.spark.ShuffleDependency;
import org.apache.spark.SparkEnv;
import org.apache.spark.TaskContext;
import org.apache.spark.scheduler.MapStatus;
import org.apache.spark.serializer.SerializationStream;
import org.apache.spark.serializer.Serializer;
import org.apache.spark.serializer.SerializerInstance;
import org.apache.spark.shuffle.BaseShuffleHandle;
import org.apache.spark.shuffle.ShuffleWriteMetricsReporter;
import org.apache.spark.shuffle.ShuffleWriter;
import org.apache.spark.storage.BlockManagerId;
import org.apache.spark.storage.BlockManagerId$;
import scala.Option;
import scala.Product2;
import scala.collection.Iterator;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;

/**
 * A map task's output: records are serialized with the dependency's serializer and pushed
 * with their partition ids; the server splits them. {@code stop(true)} returns a
 * {@code MapStatus} naming the server and the stored size of every partition.
 */
final class SluiceShuffleWriter<K, V> extends ShuffleWriter<K, V> {
  private final SluiceShuffleManagerBase manager;
  private final BaseShuffleHandle<K, V, ?> handle;
  private final long mapId;
  private final TaskContext context;
  private final ShuffleWriteMetricsReporter metrics;
  private long writer; // 0 when no push is open
  private long[] sizes = new long[0];
  /** The server holding the second copy of the committed output, or -1. */
  private int replica = -1;
  private MapStatus status;

  SluiceShuffleWriter(
      SluiceShuffleManagerBase manager, BaseShuffleHandle<K, V, ?> handle, long mapId,
      TaskContext context, ShuffleWriteMetricsReporter metrics) {
    this.manager = manager;
    this.handle = handle;
    this.mapId = mapId;
    this.context = context;
    this.metrics = metrics;
  }

  @Override
  @SuppressWarnings({"unchecked", "rawtypes"})
  public void write(Iterator<Product2<K, V>> records) {
    ShuffleDependency<K, V, ?> dep = handle.dependency();
    Iterator<? extends Product2<?, ?>> input = records;
    if (dep.mapSideCombine()) {
      // As Spark's own writers: combine on the map side before anything leaves the task.
      input = ((org.apache.spark.Aggregator) dep.aggregator().get())
          .combineValuesByKey((Iterator) records, context);
    }
    Partitioner partitioner = dep.partitioner();
    int numPartitions = partitioner.numPartitions();
    int server = openPush(numPartitions);
    long count = 0;
    Serializer serializer = dep.serializer();
    SerializerInstance instance = serializer.newInstance();
    // Relocatable serializers allow records to be cut apart and concatenated in any order,
    // so one stream serves the whole task; others get a stream per record.
    boolean relocatable = serializer.supportsRelocationOfSerializedObjects();
    WriterMemory memory = new WriterMemory(context);
    RecordBuffer buffer = new RecordBuffer(writer, memory);
    ClassTag<Object> any = ClassTag$.MODULE$.Any();
    int batchBytes = manager.sluiceConf().batchBytes;
    long commitNanos;
    try {
      memory.attach(buffer);
      SerializationStream shared = relocatable ? instance.serializeStream(buffer) : null;
      while (input.hasNext()) {
        Product2<?, ?> record = input.next();
        SerializationStream out = relocatable ? shared : instance.serializeStream(buffer);
        out.writeKey(record._1(), any);
        out.writeValue(record._2(), any);
        out.flush();
        if (!relocatable) {
          out.close();
        }
        buffer.endRecord(partitioner.getPartition(record._1()));
        count++;
        if (buffer.size() >= batchBytes) {
          buffer.push();
        }
      }
      buffer.push();
      long t = System.nanoTime();
      long[] committed = NativeBridge.commit(writer);
      // The stored bytes of each partition, then the second copy's server (-1: none).
      sizes = java.util.Arrays.copyOf(committed, committed.length - 1);
      replica = (int) committed[committed.length - 1];
      commitNanos = System.nanoTime() - t;
      writer = 0;
    } finally {
      if (writer != 0) {
        // Failed: the memory goes back to Spark now, so the native copy goes too.
        NativeBridge.trim(writer);
      }
      memory.release();
    }
    long bytes = 0;
    for (long s : sizes) {
      bytes += s;
    }
    metrics.incBytesWritten(bytes);
    metrics.incRecordsWritten(count);
    metrics.incWriteTime(buffer.nativeNanos() + commitNanos);
    status = SparkShims.mapStatus(location(manager.sluiceConf(), server, replica), sizes, mapId);
  }

  /** Opens the push on the preferred server, or on the next one that answers. */
  private int openPush(int numPartitions) {
    SluiceConf conf = manager.sluiceConf();
    int first = preferredServer(conf);
    RuntimeException last = null;
    for (int i = 0; i < conf.servers.size(); i++) {
      int server = (first + i) % conf.servers.size();
      try {
        writer = NativeBridge.openWriter(
            manager.session(), server, handle.shuffleId(), numPartitions, mapId,
            context.partitionId(), context.attemptNumber());
        return server;
      } catch (SluiceException e) {
        last = e;
      }
    }
    throw last;
  }

  /**
   * A stable choice by map index, among the servers on this task's host when the list
   * has any (the sidecar case) and among all otherwise. Consecutive map indexes take
   * the servers in turn, from an offset hashed from the shuffle id, so a stage's maps
   * spread evenly (placed by a hash of the map id, 4 maps on 2 servers all land on one
   * in 1 stage of 8), and one-map shuffles do not all start on the first server.
   */
  private int preferredServer(SluiceConf conf) {
    int n = conf.servers.size();
    if (conf.placement.equals("local")) {
      String host = SparkEnv.get().blockManager().blockManagerId().host();
      List<Integer> local = new java.util.ArrayList<>();
      for (int i = 0; i < n; i++) {
        if (conf.host(i).equals(host)) {
          local.add(i);
        }
      }
      if (!local.isEmpty()) {
        return local.get(inTurn(local.size()));
      }
    }
    return inTurn(n);
  }

  /** The map's turn among `n` servers. */
  private int inTurn(int n) {
    return (int) Math.floorMod(mix(handle.shuffleId()) + context.partitionId(), (long) n);
  }

  /** Spreads consecutive shuffle ids (a splitmix64 step). */
  private static long mix(long x) {
    x = (x ^ (x >>> 30)) * 0xbf58476d1ce4e5b9L;
    x = (x ^ (x >>> 27)) * 0x94d049bb133111ebL;
    return x ^ (x >>> 31);
  }

  /**
   * Where Spark records this map output: a block manager id at the server, named
   * "sluice-server-<server>" or, with a second copy, "sluice-server-<server>+<replica>".
   * Spark drops the outputs of an id whose fetch failed, so maps are grouped by where
   * both their copies are, and a fetch fails only when both did.
   */
  static BlockManagerId location(SluiceConf conf, int server, int replica) {
    String id = SluiceShuffleReader.EXECUTOR_PREFIX + server + (replica < 0 ? "" : "+" + replica);
    return BlockManagerId$.MODULE$.apply(id, conf.host(server), conf.port(server), Option.empty());
  }

  @Override
  public Option<MapStatus> stop(boolean success) {
    if (writer != 0) {
      // Not committed: the server never serves an abandoned push.
      NativeBridge.abort(writer);
      writer = 0;
    }
    return success && status != null ? Option.apply(status) : Option.empty();
  }

  @Override
  public long[] getPartitionLengths() {
    return sizes;
  }
}
