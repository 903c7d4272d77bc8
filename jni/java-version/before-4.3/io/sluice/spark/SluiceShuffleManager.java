package io.sluice.spark;

import org.apache.spark.SparkConf;

/** The Sluice shuffle manager for Spark 3.5 to 4.2. */
public class SluiceShuffleManager extends SluiceShuffleManagerBase {
  public SluiceShuffleManager(SparkConf conf, boolean isDriver) {
    super(conf, isDriver);
  }
}
