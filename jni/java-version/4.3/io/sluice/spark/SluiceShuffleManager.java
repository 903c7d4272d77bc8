package io.sluice.spark;

import org.apache.spark.SparkConf;
import org.apache.spark.shuffle.BlockingShuffleManager;

/** The Sluice shuffle manager for Spark 4.3 and later, which require this interface. */
public class SluiceShuffleManager extends SluiceShuffleManagerBase
    implements BlockingShuffleManager {
  public SluiceShuffleManager(SparkConf conf, boolean isDriver) {
    super(conf, isDriver);
  }
}
