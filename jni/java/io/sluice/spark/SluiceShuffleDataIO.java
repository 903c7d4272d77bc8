package io.sluice.spark;

import java.util.Collections;
import java.util.Map;
import org.apache.spark.SparkConf;
import org.apache.spark.shuffle.api.ShuffleDataIO;
import org.apache.spark.shuffle.api.ShuffleDriverComponents;
import org.apache.spark.shuffle.api.ShuffleExecutorComponents;
import org.apache.spark.shuffle.sort.io.LocalDiskShuffleDataIO;

/**
 * Tells the driver that shuffle data lives on the Sluice servers, not in executors: it
 * survives an executor's removal, so dynamic allocation works without Spark's external
 * shuffle service and a lost executor costs no map outputs. The Sluice shuffle manager sets
 * {@code spark.shuffle.sort.io.plugin.class} to this class unless the conf names another.
 *
 * <p>The executor side is never used by the Sluice shuffle manager (its writers push to the
 * servers); it is Spark's local-disk implementation, for any caller that asks.
 */
public class SluiceShuffleDataIO implements ShuffleDataIO {
  private final SparkConf conf;

  public SluiceShuffleDataIO(SparkConf conf) {
    this.conf = conf;
  }

  @Override
  public ShuffleExecutorComponents executor() {
    return new LocalDiskShuffleDataIO(conf).executor();
  }

  @Override
  public ShuffleDriverComponents driver() {
    return new Driver();
  }

  /** Data cleanup is the shuffle manager's (unregisterShuffle, stop). */
  private static final class Driver implements ShuffleDriverComponents {
    @Override
    public Map<String, String> initializeApplication() {
      return Collections.emptyMap();
    }

    @Override
    public void cleanupApplication() {}

    @Override
    public boolean supportsReliableStorage() {
      return true;
    }
  }
}
