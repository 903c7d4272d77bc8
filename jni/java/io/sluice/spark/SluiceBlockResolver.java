package io.sluice.spark;

import java.lang.reflect.Proxy;
import org.apache.spark.shuffle.ShuffleBlockResolver;

/**
 * Sluice keeps no shuffle blocks in executors, so nothing asks a block manager for one;
 * a request that arrives anyway gets a clear error. Built as a proxy because the
 * interface's method signatures differ between Scala versions.
 */
final class SluiceBlockResolver {
  private SluiceBlockResolver() {}

  static ShuffleBlockResolver create() {
    return (ShuffleBlockResolver) Proxy.newProxyInstance(
        SluiceBlockResolver.class.getClassLoader(),
        new Class<?>[] {ShuffleBlockResolver.class},
        (proxy, method, args) -> {
          switch (method.getName()) {
            case "stop":
              return null;
            case "toString":
              return "SluiceBlockResolver";
            case "hashCode":
              return System.identityHashCode(proxy);
            case "equals":
              return proxy == args[0];
            default:
              throw new UnsupportedOperationException(
                  "shuffle blocks are stored on Sluice servers, not in executors ("
                      + method.getName() + ")");
          }
        });
  }
}
