package io.sluice.spark;

import java.io.ByteArrayInputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.TreeMap;
import org.apache.spark.Aggregator;
import org.apache.spark.InterruptibleIterator;
import org.apache.spark.ShuffleDependency;
import org.apache.spark.SparkEnv;
import org.apache.spark.TaskContext;
import org.apache.spark.serializer.DeserializationStream;
import org.apache.spark.serializer.Serializer;
import org.apache.spark.serializer.SerializerInstance;
import org.apache.spark.shuffle.BaseShuffleHandle;
import org.apache.spark.shuffle.FetchFailedException;
import org.apache.spark.shuffle.ShuffleReadMetricsReporter;
import org.apache.spark.shuffle.ShuffleReader;
import org.apache.spark.storage.BlockId;
import org.apache.spark.storage.BlockManagerId;
import org.apache.spark.storage.ShuffleBlockId;
import org.apache.spark.util.TaskCompletionListener;
import org.apache.spark.util.collection.ExternalSorter;
import scala.Product2;
import scala.Tuple2;
import scala.Tuple3;
import scala.collection.AbstractIterator;
import scala.collection.Iterator;

/**
 * A reduce task's input: the map outputs {@code MapOutputTracker} lists for the requested
 * map and partition ranges, fetched from the servers that hold them, deserialized, then
 * aggregated and sorted as the dependency asks (as Spark's own reader does). Maps with a
 * second copy are read from the other server when the first fails or lacks them; when
 * every copy fails the reader raises {@code FetchFailedException} naming where they were,
 * so Spark recomputes exactly those maps.
 */
final class SluiceShuffleReader<K, C> implements ShuffleReader<K, C> {
  /**
   * Map outputs are recorded at block manager ids "sluice-server-<index in the list>", or
   * "sluice-server-<index>+<index of the server with the second copy>".
   */
  static final String EXECUTOR_PREFIX = "sluice-server-";

  private final SluiceShuffleManagerBase manager;
  private final BaseShuffleHandle<K, ?, C> handle;
  private final int startMapIndex;
  private final int endMapIndex;
  private final int startPartition;
  private final int endPartition;
  private final TaskContext context;
  private final ShuffleReadMetricsReporter metrics;

  SluiceShuffleReader(
      SluiceShuffleManagerBase manager, BaseShuffleHandle<K, ?, C> handle, int startMapIndex,
      int endMapIndex, int startPartition, int endPartition, TaskContext context,
      ShuffleReadMetricsReporter metrics) {
    this.manager = manager;
    this.handle = handle;
    this.startMapIndex = startMapIndex;
    this.endMapIndex = endMapIndex;
    this.startPartition = startPartition;
    this.endPartition = endPartition;
    this.context = context;
    this.metrics = metrics;
  }

  /** The map outputs to read from one server (and from their second copies' server). */
  private static final class ServerMaps {
    final BlockManagerId location;
    final int server;
    /** The server with the second copies, or -1. */
    final int replica;
    final LinkedHashSet<Long> mapIds = new LinkedHashSet<>();
    long firstMapId = -1;
    int firstMapIndex = -1;
    /** The stored bytes the map output tracker lists for this fetch (its estimate). */
    long bytes;

    ServerMaps(BlockManagerId location, int[] copies) {
      this.location = location;
      this.server = copies[0];
      this.replica = copies[1];
    }
  }

  @SuppressWarnings({"unchecked", "rawtypes"})
  private Map<Long, ServerMaps> mapsByServer() {
    Map<Long, ServerMaps> out = new TreeMap<>();
    Iterator<?> it = SparkEnv.get().mapOutputTracker().getMapSizesByExecutorId(
        handle.shuffleId(), startMapIndex, endMapIndex, startPartition, endPartition);
    while (it.hasNext()) {
      Tuple2<BlockManagerId, ?> entry = (Tuple2<BlockManagerId, ?>) it.next();
      BlockManagerId location = entry._1();
      int[] copies = copies(location);
      long key = ((long) copies[0] << 32) | (copies[1] + 1);
      ServerMaps maps = out.computeIfAbsent(key, k -> new ServerMaps(location, copies));
      Iterator<?> blocks = ((scala.collection.Iterable<?>) entry._2()).iterator();
      while (blocks.hasNext()) {
        Tuple3<BlockId, Object, Object> block = (Tuple3<BlockId, Object, Object>) blocks.next();
        long mapId = ((ShuffleBlockId) block._1()).mapId();
        maps.bytes += (Long) block._2();
        if (maps.mapIds.add(mapId) && maps.firstMapId < 0) {
          maps.firstMapId = mapId;
          maps.firstMapIndex = (Integer) block._3();
        }
      }
    }
    return out;
  }

  /** The server and the second copy's server (-1: none) named by a location. */
  private int[] copies(BlockManagerId location) {
    String exec = location.executorId();
    int n = manager.sluiceConf().servers.size();
    if (exec.startsWith(EXECUTOR_PREFIX)) {
      String[] parts = exec.substring(EXECUTOR_PREFIX.length()).split("\\+", -1);
      try {
        int server = Integer.parseInt(parts[0]);
        int replica = parts.length == 2 ? Integer.parseInt(parts[1]) : -1;
        if (parts.length <= 2 && server >= 0 && server < n && replica >= -1 && replica < n
            && replica != server) {
          return new int[] {server, replica};
        }
      } catch (NumberFormatException e) {
        // fall through
      }
    }
    throw new IllegalStateException(
        "map output at " + location + " is not on a server of spark.sluice.servers");
  }

  @Override
  @SuppressWarnings({"unchecked", "rawtypes"})
  public Iterator<Product2<K, C>> read() {
    ShuffleDependency<K, ?, C> dep = handle.dependency();
    Iterator<Product2<Object, Object>> records = new Records(mapsByServer(), dep.serializer());
    Iterator<Product2<K, C>> result;
    if (dep.aggregator().isDefined()) {
      Aggregator agg = dep.aggregator().get();
      result = dep.mapSideCombine()
          ? agg.combineCombinersByKey((Iterator) records, context)
          : agg.combineValuesByKey((Iterator) records, context);
    } else {
      result = (Iterator) records;
    }
    if (dep.keyOrdering().isDefined()) {
      ExternalSorter sorter = SparkShims.sorter(context, dep.keyOrdering(), dep.serializer());
      context.addTaskCompletionListener((TaskCompletionListener) ctx -> sorter.stop());
      result = sorter.insertAllAndUpdateMetrics(result);
    }
    return new InterruptibleIterator<>(context, result);
  }

  /**
   * Stored bytes of fetches opened ahead of the one being read. Their servers start
   * sending at once, so a task pays one server's latency instead of one per server;
   * the bound keeps what they send within the client's stream window (16 MiB), so a
   * server never waits on a reader still busy with another server's fetch (it would
   * give up after its stall timeout).
   */
  static final long OPEN_AHEAD_BYTES = 8L << 20;

  /** Records of every listed map output, server by server, batch by batch. */
  private final class Records extends AbstractIterator<Product2<Object, Object>> {
    private final List<ServerMaps> servers;
    /** Each server's fetch handle: 0 before it is opened and after it is closed. */
    private final long[] fetches;
    private final SerializerInstance serializer;
    private final boolean relocatable;
    /** The fetch being read. */
    private int at;
    /** Fetches below this index have been opened (those below {@code at} closed again). */
    private int openedUpTo;
    private Iterator<Tuple2<Object, Object>> batch = null;

    Records(Map<Long, ServerMaps> maps, Serializer serializer) {
      this.servers = new ArrayList<>(maps.values());
      this.fetches = new long[servers.size()];
      this.serializer = serializer.newInstance();
      this.relocatable = serializer.supportsRelocationOfSerializedObjects();
      context.addTaskCompletionListener((TaskCompletionListener) ctx -> finish());
    }

    @Override
    public boolean hasNext() {
      while (batch == null || !batch.hasNext()) {
        if (!advance()) {
          finish();
          return false;
        }
      }
      return true;
    }

    /**
     * Ends the read: closes the open fetches and folds this reader's metrics into the
     * task's. Spark keeps a reader's counts apart until they are merged, and merges them
     * itself only on an executor heartbeat, so without this the task's shuffle read
     * metrics (UI, event log, listeners) would miss most of what it read. Merging sets
     * the totals of every reader of the task, so calling it again is harmless.
     */
    private void finish() {
      closeFetches();
      context.taskMetrics().mergeShuffleReadMetrics();
    }

    @Override
    public Product2<Object, Object> next() {
      if (!hasNext()) {
        throw new NoSuchElementException();
      }
      metrics.incRecordsRead(1);
      return batch.next();
    }

    /** Loads the next batch, moving to the next server's fetch as one ends. */
    private boolean advance() {
      if (openedUpTo == 0 && !servers.isEmpty()) {
        openThrough(0);
      }
      while (at < servers.size()) {
        long start = System.nanoTime();
        byte[] bytes = guard(at, () -> NativeBridge.nextBatch(fetches[at]));
        metrics.incFetchWaitTime((System.nanoTime() - start) / 1_000_000);
        if (bytes == null) {
          closeFetch(at);
          at++;
          if (at < servers.size()) {
            openThrough(at);
          }
          continue;
        }
        metrics.incRemoteBytesRead(bytes.length);
        metrics.incRemoteBlocksFetched(1);
        batch = decode(bytes);
        return true;
      }
      return false;
    }

    /**
     * Opens fetch {@code i} if it is not yet, and the fetches after it while the bytes
     * they are listed with stay within {@link #OPEN_AHEAD_BYTES}.
     */
    private void openThrough(int i) {
      if (openedUpTo <= i) {
        open(i);
        openedUpTo = i + 1;
      }
      long ahead = 0;
      for (int j = i + 1; j < openedUpTo; j++) {
        ahead += servers.get(j).bytes;
      }
      while (openedUpTo < servers.size()
          && ahead + servers.get(openedUpTo).bytes <= OPEN_AHEAD_BYTES) {
        ahead += servers.get(openedUpTo).bytes;
        open(openedUpTo++);
      }
    }

    private void open(int i) {
      ServerMaps maps = servers.get(i);
      fetches[i] = guard(i, () -> NativeBridge.openFetch(
          manager.session(), maps.server, maps.replica, handle.shuffleId(),
          startPartition, endPartition, mapIdArray(maps.mapIds)));
    }

    private Iterator<Tuple2<Object, Object>> decode(byte[] bytes) {
      ByteBuffer in = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
      int count = in.getInt();
      int dataStart = 4 + 4 * count;
      if (relocatable) {
        DeserializationStream s = serializer.deserializeStream(
            new ByteArrayInputStream(bytes, dataStart, bytes.length - dataStart));
        return s.asKeyValueIterator();
      }
      List<Tuple2<Object, Object>> out = new ArrayList<>(count);
      int at = dataStart;
      for (int i = 0; i < count; i++) {
        int len = in.getInt();
        DeserializationStream s =
            serializer.deserializeStream(new ByteArrayInputStream(bytes, at, len));
        Object key = s.readKey(scala.reflect.ClassTag$.MODULE$.Any());
        Object value = s.readValue(scala.reflect.ClassTag$.MODULE$.Any());
        s.close();
        out.add(new Tuple2<>(key, value));
        at += len;
      }
      return new Listed<>(out);
    }

    private void closeFetches() {
      for (int i = 0; i < fetches.length; i++) {
        closeFetch(i);
      }
    }

    private void closeFetch(int i) {
      if (fetches[i] != 0) {
        NativeBridge.closeFetch(fetches[i]);
        fetches[i] = 0;
      }
    }

    /**
     * Runs a native call on fetch {@code i}; its failure (every copy failed) is a fetch
     * failure naming that fetch's server. Every open fetch is closed first.
     */
    private <T> T guard(int i, java.util.function.Supplier<T> call) {
      try {
        return call.get();
      } catch (SluiceException e) {
        closeFetches();
        ServerMaps maps = servers.get(i);
        throw sneaky(new FetchFailedException(
            maps.location, handle.shuffleId(), maps.firstMapId, maps.firstMapIndex,
            startPartition, e.getMessage(), e));
      }
    }
  }

  /** A Scala iterator over a Java list (the converters differ between Scala versions). */
  private static final class Listed<T> extends AbstractIterator<T> {
    private final List<T> items;
    private int next;

    Listed(List<T> items) {
      this.items = items;
    }

    @Override
    public boolean hasNext() {
      return next < items.size();
    }

    @Override
    public T next() {
      if (!hasNext()) {
        throw new NoSuchElementException();
      }
      return items.get(next++);
    }
  }

  private static long[] mapIdArray(java.util.Collection<Long> ids) {
    long[] out = new long[ids.size()];
    int i = 0;
    for (long id : ids) {
      out[i++] = id;
    }
    return out;
  }

  /** Throws a checked exception from an iterator (Scala code has no checked exceptions). */
  @SuppressWarnings("unchecked")
  private static <E extends Throwable> RuntimeException sneaky(Throwable e) throws E {
    throw (E) e;
  }
}
