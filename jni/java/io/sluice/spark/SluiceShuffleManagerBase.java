package io.sluice.spark;

import java.security.SecureRandom;
import java.util.Base64;
import org.apache.spark.ShuffleDependency;
import org.apache.spark.SparkConf;
import org.apache.spark.TaskContext;
import org.apache.spark.shuffle.BaseShuffleHandle;
import org.apache.spark.shuffle.ShuffleBlockResolver;
import org.apache.spark.shuffle.ShuffleHandle;
import org.apache.spark.shuffle.ShuffleManager;
import org.apache.spark.shuffle.ShuffleReadMetricsReporter;
import org.apache.spark.shuffle.ShuffleReader;
import org.apache.spark.shuffle.ShuffleWriteMetricsReporter;
import org.apache.spark.shuffle.ShuffleWriter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Spark's shuffle through Sluice servers: map tasks push their records to a server, which
 * splits and stores them; reduce tasks fetch their partitions from the servers that hold
 * them. Users name {@code io.sluice.spark.SluiceShuffleManager}, a subclass built for
 * their Spark version (see {@code jni/java-version/}): Spark 4.3 demands a
 * {@code BlockingShuffleManager}, an interface older versions lack.
 */
public abstract class SluiceShuffleManagerBase implements ShuffleManager {
  private static final Logger LOG = LoggerFactory.getLogger(SluiceShuffleManagerBase.class);
  /** Spark's setting naming the {@code ShuffleDataIO}. */
  static final String DATA_IO = "spark.shuffle.sort.io.plugin.class";
  private final SparkConf conf;
  private final boolean isDriver;
  private final SluiceConf sluice;
  private final ShuffleBlockResolver resolver = SluiceBlockResolver.create();
  private long session; // 0 until first use
  private boolean stopped;

  protected SluiceShuffleManagerBase(SparkConf conf, boolean isDriver) {
    this.conf = conf;
    this.isDriver = isDriver;
    this.sluice = new SluiceConf(conf);
    if (isDriver && !conf.contains(SluiceConf.APP_SECRET)) {
      // Executors receive the driver's conf, so they present the same secret.
      byte[] secret = new byte[24];
      new SecureRandom().nextBytes(secret);
      conf.set(SluiceConf.APP_SECRET, Base64.getUrlEncoder().withoutPadding().encodeToString(secret));
    }
    if (isDriver) {
      useSluiceDataIO(conf);
    }
  }

  /**
   * Spark loads its {@code ShuffleDataIO} after the shuffle manager, from the same conf, so
   * setting it here makes Spark see that shuffle data outlives executors (dynamic
   * allocation then needs no external shuffle service). An explicit choice is kept.
   */
  private static void useSluiceDataIO(SparkConf conf) {
    String mine = SluiceShuffleDataIO.class.getName();
    if (!conf.contains(DATA_IO)) {
      conf.set(DATA_IO, mine);
    } else if (!conf.get(DATA_IO).equals(mine)) {
      LOG.warn("{} is {}, not {}: Spark will not know that Sluice keeps shuffle data when "
          + "executors go away", DATA_IO, conf.get(DATA_IO), mine);
    }
  }

  /** The native session of this JVM, opened on first use (the app id is known by then). */
  synchronized long session() {
    if (stopped) {
      throw new IllegalStateException("the Sluice shuffle manager has stopped");
    }
    if (session == 0) {
      if (!conf.contains(SluiceConf.APP_SECRET)) {
        throw new IllegalStateException(
            SluiceConf.APP_SECRET + " is not set: the executor did not receive the driver's conf");
      }
      session = NativeBridge.openSession(
          String.join(",", sluice.servers), sluice.tokenFile, sluice.trustFile,
          conf.getAppId(), conf.get(SluiceConf.APP_SECRET), sluice.replication,
          sluice.idleTimeoutMs, sluice.connectTimeoutMs);
    }
    return session;
  }

  SluiceConf sluiceConf() {
    return sluice;
  }

  @Override
  public <K, V, C> ShuffleHandle registerShuffle(int shuffleId, ShuffleDependency<K, V, C> dependency) {
    return new BaseShuffleHandle<>(shuffleId, dependency);
  }

  @Override
  @SuppressWarnings("unchecked")
  public <K, V> ShuffleWriter<K, V> getWriter(
      ShuffleHandle handle, long mapId, TaskContext context, ShuffleWriteMetricsReporter metrics) {
    return new SluiceShuffleWriter<>(
        this, (BaseShuffleHandle<K, V, ?>) handle, mapId, context, metrics);
  }

  @Override
  @SuppressWarnings("unchecked")
  public <K, C> ShuffleReader<K, C> getReader(
      ShuffleHandle handle, int startMapIndex, int endMapIndex, int startPartition,
      int endPartition, TaskContext context, ShuffleReadMetricsReporter metrics) {
    return new SluiceShuffleReader<>(
        this, (BaseShuffleHandle<K, ?, C>) handle, startMapIndex, endMapIndex, startPartition,
        endPartition, context, metrics);
  }

  @Override
  public boolean unregisterShuffle(int shuffleId) {
    // Executors are told too; the driver alone deletes the data.
    if (isDriver) {
      try {
        NativeBridge.deleteShuffle(session(), shuffleId);
      } catch (RuntimeException e) {
        LOG.warn("could not delete shuffle {} on every Sluice server", shuffleId, e);
      }
    }
    return true;
  }

  // No @Override: the method's return type differs between Scala versions' views.
  public ShuffleBlockResolver shuffleBlockResolver() {
    return resolver;
  }

  @Override
  public synchronized void stop() {
    if (stopped) {
      return;
    }
    try {
      if (isDriver) {
        NativeBridge.deleteApp(session());
      }
    } catch (RuntimeException e) {
      LOG.warn("could not delete the application's data on every Sluice server", e);
    } finally {
      if (session != 0) {
        NativeBridge.closeSession(session);
        session = 0;
      }
      stopped = true;
    }
  }
}
