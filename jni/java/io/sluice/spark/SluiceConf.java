package io.sluice.spark;

import java.util.ArrayList;
import java.util.List;
import org.apache.spark.SparkConf;

/** The plugin's Spark settings (all under {@code spark.sluice.}). */
final class SluiceConf {
  static final String SERVERS = "spark.sluice.servers";
  static final String TOKEN_FILE = "spark.sluice.tokenFile";
  static final String TRUST_FILE = "spark.sluice.trustFile";
  static final String APP_SECRET = "spark.sluice.appSecret";
  static final String PLACEMENT = "spark.sluice.placement";
  static final String BATCH_BYTES = "spark.sluice.writer.batchBytes";
  static final String REPLICATION = "spark.sluice.replication";
  static final String IDLE_TIMEOUT = "spark.sluice.network.idleTimeout";
  static final String CONNECT_TIMEOUT = "spark.sluice.network.connectTimeout";

  final List<String> servers;
  final String tokenFile;
  final String trustFile;
  /**
   * "local" (the servers on the task's host, else all) or "hash" (all servers); a
   * stage's maps take them in turn by map index.
   */
  final String placement;
  final int batchBytes;
  /** Copies of each map output: 1, or 2 (the second on another server). */
  final int replication;
  /** Silence after which a connection to a server counts as lost. */
  final long idleTimeoutMs;
  final long connectTimeoutMs;

  SluiceConf(SparkConf conf) {
    servers = new ArrayList<>();
    for (String s : required(conf, SERVERS).split(",")) {
      if (!s.trim().isEmpty()) {
        servers.add(s.trim());
      }
    }
    tokenFile = required(conf, TOKEN_FILE);
    trustFile = required(conf, TRUST_FILE);
    placement = conf.get(PLACEMENT, "local");
    if (!placement.equals("local") && !placement.equals("hash")) {
      throw new IllegalArgumentException(PLACEMENT + " must be \"local\" or \"hash\", not " + placement);
    }
    batchBytes = (int) conf.getSizeAsBytes(BATCH_BYTES, "4m");
    replication = conf.getInt(REPLICATION, 1);
    if (replication != 1 && replication != 2) {
      throw new IllegalArgumentException(REPLICATION + " must be 1 or 2, not " + replication);
    }
    idleTimeoutMs = conf.getTimeAsMs(IDLE_TIMEOUT, "20s");
    connectTimeoutMs = conf.getTimeAsMs(CONNECT_TIMEOUT, "10s");
  }

  private static String required(SparkConf conf, String key) {
    if (!conf.contains(key)) {
      throw new IllegalArgumentException("the Sluice shuffle manager needs " + key);
    }
    return conf.get(key);
  }

  /** The host part of the i-th server's address. */
  String host(int i) {
    String s = servers.get(i);
    int colon = s.lastIndexOf(':');
    String host = colon < 0 ? s : s.substring(0, colon);
    return host.startsWith("[") ? host.substring(1, host.length() - 1) : host;
  }

  int port(int i) {
    String s = servers.get(i);
    return Integer.parseInt(s.substring(s.lastIndexOf(':') + 1));
  }
}
